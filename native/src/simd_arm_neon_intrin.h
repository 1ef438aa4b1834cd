/* The one place NEON translation units get their intrinsics from (instead of <arm_neon.h>).
 *
 * An AArch64 build gets the compiler's real intrinsics. The test-only CMake option
 * QT_EMULATE_NEON compiles the same sources on x86-64 against SIMDe's portable NEON (native names
 * aliased to SIMDe's) and registers the NEON level there, so its kernels run under the same
 * golden, level and sanitizer tests as the x86 ones on machines without an ARM CPU.
 */
#ifndef QT_SIMD_ARM_NEON_INTRIN_H
#define QT_SIMD_ARM_NEON_INTRIN_H

#ifdef QT_EMULATE_NEON
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/arm/neon.h>
#else
#include <arm_neon.h>
#endif

#endif /* QT_SIMD_ARM_NEON_INTRIN_H */
