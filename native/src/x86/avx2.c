/* AVX2 + FMA + F16C codecs for F16, BF16 and the 32-value legacy block types, plus the
 * K-quant/IQ4 decoders: the kernels of codecs_x86.h at 8 lanes (four ymm per block). */
#include "../internal.h"
#include "vec256.h"

#include "codecs_x86.h"

void qt_avx2_register(qt_kernel_table *t) {
    codecs_register(t);
    /* Large dequantize outputs stream (t->stream_store). Measured on the AVX2-only EPYC
     * (Zen 1), 4096x14336 -> float32, one thread, same process, streaming / plain stores:
     * F16 1.32, BF16 1.31, Q4_0 1.30, Q4_1 1.24, Q8_0 1.34, Q2_K 1.19, Q3_K 1.15, Q4_K 1.32,
     * Q5_K 1.19, Q6_K 1.24, IQ4_NL 1.35, IQ4_XS 1.47, TQ2_0 1.39, MXFP4 1.32, TQ1_0 1.09 (0.96
     * before its decoder lost the 16-bit multiplies); Q5_0 0.87 and Q5_1 0.91, whose decoders
     * run below the write bandwidth, keep plain stores. On the project's AVX-512 EPYC (Zen 4)
     * forced to AVX2, 4096x14336, the same: 1.14-1.34 for all of those, Q5_0 0.95, Q5_1 1.01. */
    t->decode_bound[QT_T_Q5_0] = 1;
    t->decode_bound[QT_T_Q5_1] = 1;
}
