/* AVX-512 (F/BW/VL) codecs for F16, BF16 and the 32-value legacy block types, plus the
 * K-quant/IQ4 decoders: the kernels of codecs_x86.h at 16 lanes. A 32-value block is two zmm
 * registers, elements 0..15 and 16..31, which is also how the nibble formats pair them, so
 * packing is an OR and one truncating narrow; F16/BF16 tails use masked loads and stores. */
#include "../internal.h"
#include "vec512.h"

#include "codecs_x86.h"

void qt_avx512_register(qt_kernel_table *t) {
    codecs_register(t);
    /* every type streams at this level (its measurements predate the AVX2 list) */
    memset(t->decode_bound, 0, sizeof t->decode_bound);
}
