/* The persistent worker pool of pool.h.
 *
 * One job runs at a time. The caller publishes it by bumping a generation number; workers
 * that see the new generation join it, take indices from a shared counter until none are
 * left, and leave. Joining is checked against the published state after announcing
 * oneself in `active`, so a worker that wakes after the caller has closed the job never
 * touches it, and the caller returns only when no joined worker is still inside a task.
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define POOL_MAX_WORKERS 255
/* How long an idle worker polls for the next job before it sleeps. Long enough to cover the
 * Python overhead between two layers' matmuls; short enough that a process which stops
 * calling gives its cores back almost at once. QTSTUDIO_SPIN_US overrides it (0: never spin). */
#define POOL_SPIN_US_DEFAULT 1000
#define POOL_SPIN_US_MAX 100000

typedef struct pool {
    pthread_mutex_t use; /* held by the one caller whose job is running */
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    /* generation << 1 | open. Workers join only an open job; the caller closes it once every
     * index is handed out. A 63-bit generation never wraps. */
    _Atomic uint64_t state;
    _Atomic int sleepers; /* workers blocked (or about to block) on `wake` */
    _Atomic int active;   /* workers between announcing themselves and leaving a job */
    _Atomic int next;     /* next index of the open job to hand out */
    /* Written by the caller before it publishes the job, read by workers after they see it. */
    qt_pool_task task;
    void *arg;
    int count;
    int nworkers; /* guarded by `use` */
    int64_t spin_ns;
    int ncpu; /* online CPUs: workers beyond them would spin against the threads doing work */
} pool;

static pool g_pool;
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void pool_reset(void) {
    pthread_mutex_init(&g_pool.use, NULL);
    pthread_mutex_init(&g_pool.sleep_lock, NULL);
    pthread_cond_init(&g_pool.wake, NULL);
    atomic_store(&g_pool.state, 0);
    atomic_store(&g_pool.sleepers, 0);
    atomic_store(&g_pool.active, 0);
    atomic_store(&g_pool.next, 0);
    g_pool.nworkers = 0;
}

/* A forked child has only the thread that called fork: it starts with an empty pool. */
static void pool_after_fork_child(void) {
    pool_reset();
}

static void pool_init(void) {
    pool_reset();
    int64_t us = POOL_SPIN_US_DEFAULT;
    const char *env = getenv("QTSTUDIO_SPIN_US");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        const long v = strtol(env, &end, 10);
        if (end != env && *end == '\0' && v >= 0) {
            us = v > POOL_SPIN_US_MAX ? POOL_SPIN_US_MAX : v;
        }
    }
    g_pool.spin_ns = us * 1000;
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    g_pool.ncpu = n < 1 ? 1 : (n > POOL_MAX_WORKERS + 1 ? POOL_MAX_WORKERS + 1 : (int)n);
    pthread_atfork(NULL, NULL, pool_after_fork_child);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait until a generation other than `seen` is published; return the state then. */
static uint64_t wait_for_job(uint64_t seen, int spin) {
    const int64_t t0 = spin ? now_ns() : 0;
    for (unsigned spins = 0; spin; spins++) {
        const uint64_t s = atomic_load_explicit(&g_pool.state, memory_order_acquire);
        if (s >> 1 != seen) {
            return s;
        }
        if ((spins & 255) == 255 && now_ns() - t0 > g_pool.spin_ns) {
            break;
        }
        CPU_RELAX();
    }
    /* Announce the sleep before the last look at the state; the caller publishes before it
     * looks at `sleepers` (both sequentially consistent), so one of the two sees the other. */
    pthread_mutex_lock(&g_pool.sleep_lock);
    atomic_fetch_add(&g_pool.sleepers, 1);
    uint64_t s;
    while ((s = atomic_load(&g_pool.state)) >> 1 == seen) {
        pthread_cond_wait(&g_pool.wake, &g_pool.sleep_lock);
    }
    atomic_fetch_sub(&g_pool.sleepers, 1);
    pthread_mutex_unlock(&g_pool.sleep_lock);
    return s;
}

static void run_indices(qt_pool_task task, void *arg, int count) {
    for (int i; (i = atomic_fetch_add(&g_pool.next, 1)) < count;) {
        task(arg, i);
    }
}

typedef struct worker_start {
    uint64_t generation; /* the worker waits for the job after this one */
    int spin;            /* poll between jobs (only while the pool fits the CPUs) */
} worker_start;

static void *worker_main(void *arg) {
    const worker_start start = *(const worker_start *)arg;
    free(arg);
    uint64_t seen = start.generation;
    for (;;) {
        const uint64_t s = wait_for_job(seen, start.spin);
        seen = s >> 1;
        if ((s & 1) == 0) {
            continue; /* closed before this worker got to it */
        }
        atomic_fetch_add(&g_pool.active, 1);
        if (atomic_load(&g_pool.state) == s) {
            /* Still open after announcing ourselves: the caller now waits for us. */
            run_indices(g_pool.task, g_pool.arg, g_pool.count);
        }
        atomic_fetch_sub(&g_pool.active, 1);
    }
    return NULL;
}

/* Start workers up to `want`; they begin waiting for the generation after `gen`. */
static void grow(int want, uint64_t gen) {
    if (want > POOL_MAX_WORKERS) {
        want = POOL_MAX_WORKERS;
    }
    if (g_pool.nworkers >= want) {
        return;
    }
    /* Workers block every signal: signals go to the application's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        while (g_pool.nworkers < want) {
            pthread_t t;
            worker_start *start = malloc(sizeof *start);
            if (start == NULL) {
                break;
            }
            /* the caller plus workers 0 .. ncpu - 2 have a core each; more would spin on
             * cores the working threads need, so they sleep between jobs at once */
            *start = (worker_start){gen, g_pool.spin_ns > 0 && g_pool.nworkers + 1 < g_pool.ncpu};
            if (pthread_create(&t, &attr, worker_main, start) != 0) {
                free(start);
                break; /* run with the workers there are; the caller does the rest */
            }
            g_pool.nworkers++;
        }
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int qt_pool_run(qt_pool_task task, void *arg, int count) {
    if (count <= 1) {
        for (int i = 0; i < count; i++) {
            task(arg, i);
        }
        return 0;
    }
    if (pthread_once(&g_pool_once, pool_init) != 0) {
        return -1;
    }
    if (pthread_mutex_trylock(&g_pool.use) != 0) {
        return -1; /* another thread's job (or a task of ours calling back in) holds the pool */
    }
    const uint64_t gen = atomic_load(&g_pool.state) >> 1;
    grow(count - 1, gen);
    g_pool.task = task;
    g_pool.arg = arg;
    g_pool.count = count;
    atomic_store(&g_pool.next, 0);
    atomic_store(&g_pool.state, (gen + 1) << 1 | 1);
    if (atomic_load(&g_pool.sleepers) > 0) {
        pthread_mutex_lock(&g_pool.sleep_lock);
        pthread_cond_broadcast(&g_pool.wake);
        pthread_mutex_unlock(&g_pool.sleep_lock);
    }
    run_indices(task, arg, count);
    atomic_store(&g_pool.state, (gen + 1) << 1);
    for (unsigned spins = 0; atomic_load(&g_pool.active) != 0; spins++) {
        if ((spins & 1023) == 1023) {
            sched_yield(); /* a worker still in a task, maybe descheduled: let it run */
        } else {
            CPU_RELAX();
        }
    }
    pthread_mutex_unlock(&g_pool.use);
    return 0;
}
