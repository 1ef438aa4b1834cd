/* NEON K-quant and IQ4 quantizers: four groups searched at once, one per lane, bit-exact with
 * the scalar reference (see ../kquants_lanes.h, which holds the searches for every level).
 *
 * Every comparison and select is spelled out as compare + bit-select rather than vminq/vmaxq,
 * whose treatment of NaN and signed zeros differs from the C ternaries of the reference. */
#include "../internal.h"
#ifdef QT_NEON_LEVEL
#include "../simd_arm_neon_intrin.h"

#include "../blocks.h"
#include "../ref/kquants.h"
#include "../ref/quant_search.h"

#define W 4
#define LANE_FN(name) qt_neon_kq_##name

typedef float32x4_t vf;
typedef int32x4_t vi;
typedef uint32x4_t vm;

/* 16-entry float table lookup by per-lane index 0..15: a byte table lookup over the 64 table
 * bytes, each lane fetching bytes 4*idx .. 4*idx+3. */
static inline float32x4_t lookup16(const float32x4_t *t, int32x4_t idx) {
    const uint8x16x4_t tab = {{vreinterpretq_u8_f32(t[0]), vreinterpretq_u8_f32(t[1]),
                               vreinterpretq_u8_f32(t[2]), vreinterpretq_u8_f32(t[3])}};
    const uint32x4_t base = vmulq_n_u32(vreinterpretq_u32_s32(idx), 0x04040404u);
    const uint8x16_t bytes = vreinterpretq_u8_u32(vaddq_u32(base, vdupq_n_u32(0x03020100u)));
    return vreinterpretq_f32_u8(vqtbl4q_u8(tab, bytes));
}

#define VF_SET1(a) vdupq_n_f32(a)
#define VF_ZERO() vdupq_n_f32(0.0f)
#define VF_LOAD(p) vld1q_f32(p)
#define VF_LOADU(p) vld1q_f32(p)
#define VF_STORE(p, v) vst1q_f32(p, v)
#define VF_ADD(a, b) vaddq_f32(a, b)
#define VF_SUB(a, b) vsubq_f32(a, b)
#define VF_MUL(a, b) vmulq_f32(a, b)
#define VF_DIV(a, b) vdivq_f32(a, b)
#define VF_LT(a, b) vcltq_f32(a, b)
#define VF_GT(a, b) vcgtq_f32(a, b)
#define VF_NLE(a, b) vmvnq_u32(vcleq_f32(a, b))
#define VF_NLT(a, b) vmvnq_u32(vcltq_f32(a, b))
#define VF_NEQ(a, b) vmvnq_u32(vceqq_f32(a, b))
#define VF_BLEND(m, a, b) vbslq_f32(m, a, b)
/* (a < b) ? a : b and (a > b) ? a : b, exactly as the reference's macros. */
#define VF_MIN(a, b) vbslq_f32(vcltq_f32(a, b), a, b)
#define VF_MAX(a, b) vbslq_f32(vcgtq_f32(a, b), a, b)
#define VF_ROUND(a) vrndnq_f32(a)
#define VF_ABS(a) vabsq_f32(a)
#define VF_XOR(a, b) vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(a), vreinterpretq_u32_f32(b)))
#define VF_AS_VI(a) vreinterpretq_s32_f32(a)
#define VF_LOOKUP16(t, idx) lookup16(t, idx)
#define VI_TO_VF(a) vcvtq_f32_s32(a)
#define VI_SET1(a) vdupq_n_s32(a)
#define VI_ADD(a, b) vaddq_s32(a, b)
#define VI_SUB(a, b) vsubq_s32(a, b)
#define VI_AND(a, b) vandq_s32(a, b)
#define VI_MIN(a, b) vminq_s32(a, b)
#define VI_MAX(a, b) vmaxq_s32(a, b)
#define VI_BLEND(m, a, b) vbslq_s32(m, a, b)
#define VI_KEEP(m, v) vandq_s32(v, vreinterpretq_s32_u32(m))
#define VM_AND(a, b) vandq_u32(a, b)
#define VM_OR(a, b) vorrq_u32(a, b)
#define VM_NOT(a) vmvnq_u32(a)
#define VM_ANY(a) (vmaxvq_u32(a) != 0)
#define VM_NONE() vdupq_n_u32(0)

#include "../kquants_lanes.h"

void qt_neon_register_kquants(qt_kernel_table *t) {
    LANE_FN(install)(t);
}
#endif
