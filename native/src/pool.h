/* A process-wide pool of worker threads that stay alive between calls.
 *
 * Creating threads per call costs a pthread_create plus however long the scheduler takes to
 * first run the new thread (measured 40 us to over 1 ms on a shared VM), which is a large part
 * of a 0.3-3 ms matrix-vector product. Pool workers instead spin for a short while after each
 * job, so back-to-back calls (an inference loop) find them awake, and then sleep on a
 * condition variable so an idle process uses no CPU.
 */
#ifndef QT_POOL_H
#define QT_POOL_H

/* One unit of a job: called exactly once for every index of the job, on some thread. */
typedef void (*qt_pool_task)(void *arg, int index);

/* Run task(arg, i) for every i in [0, count) on the calling thread and up to count - 1 pool
 * workers, and return once all have returned. Indices go to whichever thread asks first, so
 * a worker that wakes late finds nothing left rather than holding up the call.
 * Returns 0 when done, -1 without running anything when the pool is in use by another thread
 * or cannot be set up (the caller then runs the job its own way). */
int qt_pool_run(qt_pool_task task, void *arg, int count);

#endif /* QT_POOL_H */
