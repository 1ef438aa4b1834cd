/* The emulated AVX-512 level's own intrinsics (QT_EMULATE_AVX512, tests only; included by
 * simd_x86_avx512_intrin.h after SIMDe): those SIMDe 0.8.2 lacks, and the masked loads and
 * stores, whose SIMDe versions touch whole vectors (its masked stores even write zeros over
 * the unselected lanes), and roundscale, whose SIMDe version misreads the immediate.
 *
 * Each is plain C over the stored lanes and follows the instruction's documented semantics
 * (Intel SDM / intrinsics guide): truncating narrows, sign/zero widening, the BF16
 * conversion's flush of denormal inputs, masked memory access limited to the selected lanes,
 * the alignment fault of non-temporal stores, and GCC's association order for the float
 * reduction (so sums round exactly as in a real build compiled by GCC).
 */
#ifndef QT_SIMD_X86_AVX512_EMU_H
#define QT_SIMD_X86_AVX512_EMU_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Sixteen lanes converted one by one with C's conversion: to an unsigned narrower type it keeps
 * the low bits (VPMOVDW/VPMOVDB truncate), from int8/uint8 it sign/zero-extends
 * (VPMOVSXBD/VPMOVZXBD). */
#define QT_EMU_CONVERT16(name, vout, vin, out_t, in_t, store, load)                             \
    static inline vout name(vin a) {                                                           \
        in_t in[16];                                                                           \
        out_t out[16];                                                                         \
        store((void *)in, a);                                                                  \
        for (int j = 0; j < 16; j++) {                                                         \
            out[j] = (out_t)in[j];                                                             \
        }                                                                                      \
        return load((const void *)out);                                                        \
    }
QT_EMU_CONVERT16(qt_emu_mm512_cvtepi32_epi16, simde__m256i, simde__m512i, uint16_t, int32_t,
                 simde_mm512_storeu_si512, simde_mm256_loadu_si256)
QT_EMU_CONVERT16(qt_emu_mm512_cvtepi32_epi8, simde__m128i, simde__m512i, uint8_t, int32_t,
                 simde_mm512_storeu_si512, simde_mm_loadu_si128)
QT_EMU_CONVERT16(qt_emu_mm512_cvtepi8_epi32, simde__m512i, simde__m128i, int32_t, int8_t,
                 simde_mm_storeu_si128, simde_mm512_loadu_si512)
QT_EMU_CONVERT16(qt_emu_mm512_cvtepu8_epi32, simde__m512i, simde__m128i, int32_t, uint8_t,
                 simde_mm_storeu_si128, simde_mm512_loadu_si512)
#undef QT_EMU_CONVERT16

/* VCVTNEPS2BF16 (SDM pseudo-code): zero and denormal inputs become a signed zero, NaN is
 * truncated with the quiet bit set, everything else rounds to nearest even on the bit image
 * (infinity is unchanged by the bias, max-finite values round up to infinity). */
static inline simde__m256bh qt_emu_mm512_cvtneps_pbh(simde__m512 a) {
    uint32_t in[16];
    uint16_t out[16];
    simde_mm512_storeu_ps((void *)in, a);
    for (int j = 0; j < 16; j++) {
        const uint32_t x = in[j];
        const uint32_t expo = (x >> 23) & 0xffu;
        if (expo == 0) {
            out[j] = (uint16_t)((x >> 16) & 0x8000u);
        } else if (expo == 0xffu && (x & 0x7fffffu) != 0) {
            out[j] = (uint16_t)((x >> 16) | 0x40u);
        } else {
            out[j] = (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
        }
    }
    simde__m256bh r;
    memcpy(&r, out, sizeof r);
    return r;
}

/* VCVTPS2PH on 16 lanes: the two halves through the CPU's own F16C conversion (the emulated
 * build keeps -mf16c), which has exactly the 512-bit form's per-lane rounding and NaN rules.
 * The immediate must be a constant for the instruction, hence the switch. */
static inline simde__m256i qt_emu_mm512_cvtps_ph(simde__m512 a, int imm) {
    float in[16];
    simde_mm512_storeu_ps(in, a);
    const simde__m256 lo = simde_mm256_loadu_ps(in), hi = simde_mm256_loadu_ps(in + 8);
    simde__m128i rlo, rhi;
#define QT_EMU_CVTPS_PH_CASE(r)                                                                \
    case r:                                                                                    \
        rlo = _mm256_cvtps_ph(lo, r);                                                          \
        rhi = _mm256_cvtps_ph(hi, r);                                                          \
        break;
    switch (imm & 7) {
        QT_EMU_CVTPS_PH_CASE(0)
        QT_EMU_CVTPS_PH_CASE(1)
        QT_EMU_CVTPS_PH_CASE(2)
        QT_EMU_CVTPS_PH_CASE(3)
    default: /* bit 2: the MXCSR rounding mode */
        rlo = _mm256_cvtps_ph(lo, 4);
        rhi = _mm256_cvtps_ph(hi, 4);
        break;
    }
#undef QT_EMU_CVTPS_PH_CASE
    return simde_mm256_set_m128i(rhi, rlo);
}

/* _mm256_round_ps needs its immediate as a constant: one case per rounding-control value. */
static inline simde__m256 qt_emu_round256(simde__m256 v, int rc) {
#define QT_EMU_ROUND_CASE(r)                                                                   \
    case r:                                                                                    \
        return _mm256_round_ps(v, r);
    switch (rc & 15) {
        QT_EMU_ROUND_CASE(0) QT_EMU_ROUND_CASE(1) QT_EMU_ROUND_CASE(2) QT_EMU_ROUND_CASE(3)
        QT_EMU_ROUND_CASE(4) QT_EMU_ROUND_CASE(5) QT_EMU_ROUND_CASE(6) QT_EMU_ROUND_CASE(7)
        QT_EMU_ROUND_CASE(8) QT_EMU_ROUND_CASE(9) QT_EMU_ROUND_CASE(10) QT_EMU_ROUND_CASE(11)
        QT_EMU_ROUND_CASE(12) QT_EMU_ROUND_CASE(13) QT_EMU_ROUND_CASE(14)
    default:
        return _mm256_round_ps(v, 15);
    }
#undef QT_EMU_ROUND_CASE
}

/* VRNDSCALEPS: imm[7:4] = M fraction bits kept, imm[3:0] = rounding control exactly as
 * ROUNDPS reads it (bit 3 only suppresses the precision exception). SIMDe 0.8.2 takes bit 3 as
 * part of M (_MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC truncated to eighths), hence this one.
 * Scaling by 2^M is exact; lanes with |x| >= 2^(23-M) are already multiples of 2^-M, so they
 * (and NaN/Inf) take the M = 0 rounding, which leaves them unchanged (NaN quieted). */
static inline simde__m512 qt_emu_mm512_roundscale_ps(simde__m512 a, int imm) {
    const int m = (imm >> 4) & 15;
    const float up = (float)(1u << m), down = 1.0f / up, big = (float)(1u << (23 - m));
    float in[16], scaled[16], plain[16], out[16];
    simde_mm512_storeu_ps(in, a);
    for (int h = 0; h < 16; h += 8) {
        const simde__m256 v = simde_mm256_loadu_ps(in + h);
        simde_mm256_storeu_ps(plain + h, qt_emu_round256(v, imm));
        const simde__m256 r = qt_emu_round256(_mm256_mul_ps(v, _mm256_set1_ps(up)), imm);
        simde_mm256_storeu_ps(scaled + h, _mm256_mul_ps(r, _mm256_set1_ps(down)));
    }
    for (int j = 0; j < 16; j++) {
        const float ax = in[j] < 0 ? -in[j] : in[j];
        out[j] = ax < big ? scaled[j] : plain[j];
    }
    return simde_mm512_loadu_ps(out);
}

/* Masked loads and stores touch only the selected lanes' memory: the real instructions
 * suppress faults elsewhere (a tail load or store past the end of a buffer is legal) and leave
 * unselected destination bytes alone. */
static inline void qt_emu_masked_copy(void *dst, const void *src, uint64_t k, int lanes,
                                      int lane_bytes) {
    for (int j = 0; j < lanes; j++) {
        if ((k >> j) & 1u) {
            memcpy((char *)dst + j * lane_bytes, (const char *)src + j * lane_bytes,
                   (size_t)lane_bytes);
        }
    }
}

/* Zeroing masked load / masked store of `lanes` lanes of lane_t. */
#define QT_EMU_MASKZ_LOAD_AT(width, name, vt, mask_t, lane_t, lanes, sfx)                      \
    static inline vt qt_emu_##name(mask_t k, const void *p) {                                  \
        lane_t v[lanes] = {0};                                                                 \
        qt_emu_masked_copy(v, p, k, lanes, (int)sizeof(lane_t));                               \
        return simde_##width##_loadu_##sfx((const void *)v);                                   \
    }
#define QT_EMU_MASK_STORE_AT(width, name, vt, mask_t, lane_t, lanes, sfx)                      \
    static inline void qt_emu_##name(void *p, mask_t k, vt a) {                                \
        lane_t v[lanes];                                                                       \
        simde_##width##_storeu_##sfx((void *)v, a);                                            \
        qt_emu_masked_copy(p, v, k, lanes, (int)sizeof(lane_t));                               \
    }
#define QT_EMU_MASKZ_LOAD(...) QT_EMU_MASKZ_LOAD_AT(mm512, __VA_ARGS__)
#define QT_EMU_MASKZ_LOAD256(...) QT_EMU_MASKZ_LOAD_AT(mm256, __VA_ARGS__)
#define QT_EMU_MASK_STORE(...) QT_EMU_MASK_STORE_AT(mm512, __VA_ARGS__)
#define QT_EMU_MASK_STORE256(...) QT_EMU_MASK_STORE_AT(mm256, __VA_ARGS__)
QT_EMU_MASKZ_LOAD(mm512_maskz_loadu_epi32, simde__m512i, uint16_t, int32_t, 16, si512)
QT_EMU_MASKZ_LOAD(mm512_maskz_loadu_ps, simde__m512, uint16_t, float, 16, ps)
QT_EMU_MASKZ_LOAD(mm512_maskz_loadu_epi16, simde__m512i, uint32_t, int16_t, 32, si512)
QT_EMU_MASKZ_LOAD256(mm256_maskz_loadu_epi16, simde__m256i, uint16_t, int16_t, 16, si256)

QT_EMU_MASK_STORE(mm512_mask_storeu_epi32, simde__m512i, uint16_t, int32_t, 16, si512)
QT_EMU_MASK_STORE(mm512_mask_storeu_ps, simde__m512, uint16_t, float, 16, ps)
QT_EMU_MASK_STORE256(mm256_mask_storeu_epi16, simde__m256i, uint16_t, int16_t, 16, si256)
#undef QT_EMU_MASKZ_LOAD_AT
#undef QT_EMU_MASK_STORE_AT
#undef QT_EMU_MASKZ_LOAD
#undef QT_EMU_MASKZ_LOAD256
#undef QT_EMU_MASK_STORE
#undef QT_EMU_MASK_STORE256

/* GCC's sequence: halves added (256, then 128 bits), then lanes {0,1}+{2,3}, then 0+1. */
static inline int32_t qt_emu_mm512_reduce_add_epi32(simde__m512i a) {
    int32_t v[16];
    uint32_t t[8];
    simde_mm512_storeu_si512((void *)v, a);
    for (int j = 0; j < 8; j++) t[j] = (uint32_t)v[j + 8] + (uint32_t)v[j];
    for (int j = 0; j < 4; j++) t[j] = t[j + 4] + t[j];
    for (int j = 0; j < 2; j++) t[j] = t[j] + t[j + 2];
    return (int32_t)(t[0] + t[1]);
}

static inline float qt_emu_mm512_reduce_add_ps(simde__m512 a) {
    float v[16], t[8];
    simde_mm512_storeu_ps(v, a);
    for (int j = 0; j < 8; j++) t[j] = v[j + 8] + v[j];
    for (int j = 0; j < 4; j++) t[j] = t[j + 4] + t[j];
    for (int j = 0; j < 2; j++) t[j] = t[j] + t[j + 2];
    return t[0] + t[1];
}

/* VMOVNTPS: the real store faults unless the address is 64-byte aligned, so does this. */
static inline void qt_emu_mm512_stream_ps(float *p, simde__m512 a) {
    if (((uintptr_t)p & 63u) != 0) {
        abort();
    }
    simde_mm512_storeu_ps(p, a);
}

#define _mm512_cvtepi32_epi16(a) qt_emu_mm512_cvtepi32_epi16(a)
#define _mm512_cvtepi32_epi8(a) qt_emu_mm512_cvtepi32_epi8(a)
#define _mm512_cvtepi8_epi32(a) qt_emu_mm512_cvtepi8_epi32(a)
#define _mm512_cvtepu8_epi32(a) qt_emu_mm512_cvtepu8_epi32(a)
#define _mm512_cvtneps_pbh(a) qt_emu_mm512_cvtneps_pbh(a)
#define _mm512_cvtps_ph(a, imm) qt_emu_mm512_cvtps_ph(a, imm)
#define _mm512_maskz_loadu_epi32(k, p) qt_emu_mm512_maskz_loadu_epi32(k, p)
#undef _mm512_roundscale_ps
#define _mm512_roundscale_ps(a, imm) qt_emu_mm512_roundscale_ps(a, imm)
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps(k, p) qt_emu_mm512_maskz_loadu_ps(k, p)
#undef _mm512_maskz_loadu_epi16
#define _mm512_maskz_loadu_epi16(k, p) qt_emu_mm512_maskz_loadu_epi16(k, p)
#undef _mm256_maskz_loadu_epi16
#define _mm256_maskz_loadu_epi16(k, p) qt_emu_mm256_maskz_loadu_epi16(k, p)
#undef _mm512_mask_storeu_epi32
#define _mm512_mask_storeu_epi32(p, k, a) qt_emu_mm512_mask_storeu_epi32(p, k, a)
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps(p, k, a) qt_emu_mm512_mask_storeu_ps(p, k, a)
#undef _mm256_mask_storeu_epi16
#define _mm256_mask_storeu_epi16(p, k, a) qt_emu_mm256_mask_storeu_epi16(p, k, a)
#define _mm512_reduce_add_epi32(a) qt_emu_mm512_reduce_add_epi32(a)
#define _mm512_reduce_add_ps(a) qt_emu_mm512_reduce_add_ps(a)
#define _mm512_stream_ps(p, a) qt_emu_mm512_stream_ps(p, a)

#endif /* QT_SIMD_X86_AVX512_EMU_H */
