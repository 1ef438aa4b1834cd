/* CPU feature probing and the per-level kernel tables, built once at first use. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define QT_X86 1
#endif

static uint32_t g_features;
static int32_t g_active = QT_ISA_SCALAR;
static const char *g_env_error;
static char g_env_error_buf[64];
static qt_kernel_table g_tables[QT_ISA_COUNT];
static int g_level_ok[QT_ISA_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#ifdef QT_X86
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t probe_x86(void) {
    uint32_t a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        return 0;
    }
    const int osxsave = (c >> 27) & 1;
    if ((c >> 20) & 1) f |= QT_CPU_SSE42;
    /* The OS must save the wide registers (XCR0) or using them faults. */
    const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    const int ymm_ok = (xcr0 & 0x6) == 0x6;
    const int zmm_ok = ymm_ok && (xcr0 & 0xE0) == 0xE0;
    if (ymm_ok && ((c >> 28) & 1)) f |= QT_CPU_AVX;
    if (ymm_ok && ((c >> 12) & 1)) f |= QT_CPU_FMA;
    if (ymm_ok && ((c >> 29) & 1)) f |= QT_CPU_F16C;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (ymm_ok && ((b >> 5) & 1)) f |= QT_CPU_AVX2;
        if (zmm_ok && ((b >> 16) & 1)) f |= QT_CPU_AVX512F;
        if (zmm_ok && ((b >> 30) & 1)) f |= QT_CPU_AVX512BW;
        if (zmm_ok && ((b >> 31) & 1)) f |= QT_CPU_AVX512VL;
        if (zmm_ok && ((c >> 11) & 1)) f |= QT_CPU_AVX512VNNI;
        __cpuid_count(7, 1, a, b, c, d);
        if (zmm_ok && ((a >> 5) & 1)) f |= QT_CPU_AVX512BF16;
        if (ymm_ok && ((a >> 4) & 1)) f |= QT_CPU_AVXVNNI;
    }
    return f;
}
#endif

static int level_runs_here(int32_t level) {
    const uint32_t f = g_features;
    switch (level) {
    case QT_ISA_SCALAR:
        return 1;
#ifdef QT_X86
    case QT_ISA_AVX2: {
        const uint32_t need = QT_CPU_AVX | QT_CPU_AVX2 | QT_CPU_FMA | QT_CPU_F16C;
        return (f & need) == need;
    }
    case QT_ISA_AVX512: {
        const uint32_t need = QT_CPU_AVX | QT_CPU_AVX2 | QT_CPU_FMA | QT_CPU_F16C |
                              QT_CPU_AVX512F | QT_CPU_AVX512BW | QT_CPU_AVX512VL;
        return (f & need) == need;
    }
#endif
#ifdef QT_NEON_LEVEL
    case QT_ISA_NEON:
        return 1;
#endif
    default:
        return 0;
    }
}

static void build_tables(void) {
#ifdef QT_X86
    g_features = probe_x86();
#ifdef QT_EMULATE_AVX512
    /* Test build (SIMDe, AVX2 instructions underneath): the level registers wherever AVX2
     * does, with every AVX-512 extension the kernels use (matmul reads VNNI and BF16 here). */
    const uint32_t avx2_base = QT_CPU_AVX | QT_CPU_AVX2 | QT_CPU_FMA | QT_CPU_F16C;
    if ((g_features & avx2_base) == avx2_base) {
        g_features |= QT_CPU_AVX512F | QT_CPU_AVX512BW | QT_CPU_AVX512VL | QT_CPU_AVX512VNNI |
                      QT_CPU_AVX512BF16;
    }
#endif
#elif defined(__aarch64__)
    g_features = QT_CPU_NEON;
#endif
    qt_kernel_table base;
    memset(&base, 0, sizeof base);
    qt_ref_register_float(&base);
    qt_ref_register_legacy(&base);
    qt_ref_register_kquants(&base);
    qt_ref_register_iq(&base);
    g_tables[QT_ISA_SCALAR] = base;
    g_level_ok[QT_ISA_SCALAR] = 1;
#ifdef QT_X86
    if (level_runs_here(QT_ISA_AVX2)) {
        g_tables[QT_ISA_AVX2] = base;
        qt_avx2_register(&g_tables[QT_ISA_AVX2]);
        qt_avx2_register_kquants(&g_tables[QT_ISA_AVX2]);
        g_level_ok[QT_ISA_AVX2] = 1;
        g_active = QT_ISA_AVX2;
    }
    if (level_runs_here(QT_ISA_AVX512)) {
        g_tables[QT_ISA_AVX512] = g_tables[QT_ISA_AVX2];
        /* The AVX2 level keeps its streaming copy here too: on the project's AVX-512 EPYC,
         * forced to AVX2, dequantizing 64 and 224 MiB outputs ran 1.13-1.46x faster with it than
         * with plain stores (same process, one thread; Q5_0/Q5_1 store plainly anyway, see the
         * decode_bound table). An earlier note here had them 2.5-8x slower: measured at load 10-12
         * with the copy aligned to 32 bytes, where a pair of stores could straddle two lines. */
        qt_avx512_register(&g_tables[QT_ISA_AVX512]);
        qt_avx512_register_kquants(&g_tables[QT_ISA_AVX512]);
        g_level_ok[QT_ISA_AVX512] = 1;
        g_active = QT_ISA_AVX512;
    }
#endif
#ifdef QT_NEON_LEVEL
    g_tables[QT_ISA_NEON] = base;
    qt_neon_register(&g_tables[QT_ISA_NEON]);
    qt_neon_register_kquants(&g_tables[QT_ISA_NEON]);
    g_level_ok[QT_ISA_NEON] = 1;
#ifndef QT_EMULATE_NEON
    g_active = QT_ISA_NEON; /* emulated, it is picked only by name (QTSTUDIO_ISA, level) */
#endif
#endif
    const char *env = getenv("QTSTUDIO_ISA");
    if (env != NULL && env[0] != '\0') {
        int32_t want = -1;
        for (int32_t l = 0; l < QT_ISA_COUNT; l++) {
            if (strcmp(env, qt_isa_name(l)) == 0) {
                want = l;
            }
        }
        if (want >= 0 && g_level_ok[want]) {
            g_active = want;
        } else {
            strncpy(g_env_error_buf, env, sizeof g_env_error_buf - 1);
            g_env_error = g_env_error_buf;
        }
    }
}

static void ensure_init(void) {
    pthread_once(&g_once, build_tables);
}

const qt_kernel_table *qt_dispatch_table(int32_t level) {
    ensure_init();
    if (level < 0) {
        level = g_active;
    }
    if (level >= QT_ISA_COUNT || !g_level_ok[level]) {
        return NULL;
    }
    return &g_tables[level];
}

uint32_t qt_cpu_features(void) {
    ensure_init();
    return g_features;
}

int32_t qt_active_isa(void) {
    ensure_init();
    return g_active;
}

const char *qt_isa_env_error(void) {
    ensure_init();
    return g_env_error;
}

qt_status qt_isa_supported(int32_t level) {
    ensure_init();
    if (level < 0 || level >= QT_ISA_COUNT || !g_level_ok[level]) {
        return QT_ERR_ISA;
    }
    return QT_OK;
}

const char *qt_isa_name(int32_t level) {
    static const char *names[QT_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};
    if (level < 0 || level >= QT_ISA_COUNT) {
        return "unknown";
    }
    return names[level];
}
