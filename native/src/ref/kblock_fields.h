/* Packed sub-block scales of the 256-value blocks, read one at a time: the codecs' decoders and
 * the qmatmul unpackers both need them, and the bit layouts are the file format (ggml's). */
#ifndef QT_REF_KBLOCK_FIELDS_H
#define QT_REF_KBLOCK_FIELDS_H

#include <stdint.h>

#include "../blocks.h"

/* Scale and minimum j (0..7) of a Q4_K/Q5_K block, 6 bits each in 12 bytes: j < 4 in the low
 * six bits of bytes j and j+4; j >= 4 in the nibbles of byte j+4 plus the top two bits of
 * bytes j-4 and j. */
static inline void qt_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Signed scale j (0..15) of a Q3_K block: low nibble in byte j (j < 8) or the high nibble of
 * byte j-8, top two bits in byte 8 + j%4 at bit 2*(j/4); stored +32. */
static inline int qt_q3k_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Signed 6-bit scale of 32-value group ib (0..7) of an IQ4_XS block: a nibble of scales_l and
 * two bits of scales_h, stored +32. */
static inline int qt_iq4xs_scale(const block_iq4_xs *b, int ib) {
    const int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                   (((b->scales_h >> (2 * ib)) & 3) << 4);
    return ls - 32;
}

#endif /* QT_REF_KBLOCK_FIELDS_H */
