/* C11 threads on top of pthreads, preloaded (LD_PRELOAD) into the
 * ThreadSanitizer runs of scripts/sanitize.sh.
 *
 * Why: librdkafka (Debian 12's 2.0.2) starts its threads with C11
 * thrd_create and locks with mtx_* / cnd_* from glibc. glibc implements those
 * by calling its internal pthread functions directly, and g++ 12's TSan
 * runtime (libtsan2) intercepts only the public pthread_* functions. So TSan
 * never learns about librdkafka's threads: the first malloc on one of them
 * crashes inside the TSan allocator ("ThreadSanitizer: SEGV on unknown
 * address 0x000000000c38" in rdk:mock / rdk:main), which kills
 * agentflow-kafka-mock and every test that uses librdkafka. It would also
 * hide the happens-before edges librdkafka's locks create between our
 * callbacks.
 *
 * Defining these functions in a preloaded library makes librdkafka's calls
 * (versioned references like thrd_create@GLIBC_2.34 bind to an unversioned
 * definition) go to the public pthread_* functions, which TSan intercepts.
 * glibc's mtx_t / cnd_t / thrd_t have the layout of pthread_mutex_t /
 * pthread_cond_t / pthread_t, as its own implementation relies on. The
 * mapping follows glibc's nptl/thrd_*.c, mtx_*.c and cnd_*.c.
 *
 * Not for production: built and preloaded only by scripts/sanitize.sh tsan.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

static int map_error(int err) {
  switch (err) {
    case 0: return thrd_success;
    case ENOMEM: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
  }
}

struct start {
  thrd_start_t fn;
  void* arg;
};

static void* trampoline(void* p) {
  struct start s = *(struct start*)p;
  free(p);
  return (void*)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t* thr, thrd_start_t fn, void* arg) {
  struct start* s = malloc(sizeof *s);
  if (s == NULL) return thrd_nomem;
  s->fn = fn;
  s->arg = arg;
  int err = pthread_create((pthread_t*)thr, NULL, trampoline, s);
  if (err != 0) {
    free(s);
    return err == EAGAIN ? thrd_nomem : map_error(err);
  }
  return thrd_success;
}

int thrd_join(thrd_t thr, int* res) {
  void* value = NULL;
  int err = pthread_join((pthread_t)thr, &value);
  if (err == 0 && res != NULL) *res = (int)(intptr_t)value;
  return err == 0 ? thrd_success : thrd_error;
}

int thrd_detach(thrd_t thr) { return pthread_detach((pthread_t)thr) == 0 ? thrd_success : thrd_error; }

int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  switch (type) {
    case mtx_plain:
    case mtx_timed:
      break;
    case mtx_plain | mtx_recursive:
    case mtx_timed | mtx_recursive:
      pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
      break;
    default:
      pthread_mutexattr_destroy(&attr);
      return thrd_error;
  }
  int err = pthread_mutex_init((pthread_mutex_t*)m, &attr);
  pthread_mutexattr_destroy(&attr);
  return map_error(err);
}

int mtx_lock(mtx_t* m) { return map_error(pthread_mutex_lock((pthread_mutex_t*)m)); }
int mtx_trylock(mtx_t* m) { return map_error(pthread_mutex_trylock((pthread_mutex_t*)m)); }
int mtx_timedlock(mtx_t* restrict m, const struct timespec* restrict t) {
  return map_error(pthread_mutex_timedlock((pthread_mutex_t*)m, t));
}
int mtx_unlock(mtx_t* m) { return map_error(pthread_mutex_unlock((pthread_mutex_t*)m)); }
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy((pthread_mutex_t*)m); }

int cnd_init(cnd_t* c) { return map_error(pthread_cond_init((pthread_cond_t*)c, NULL)); }
int cnd_signal(cnd_t* c) { return map_error(pthread_cond_signal((pthread_cond_t*)c)); }
int cnd_broadcast(cnd_t* c) { return map_error(pthread_cond_broadcast((pthread_cond_t*)c)); }
int cnd_wait(cnd_t* c, mtx_t* m) { return map_error(pthread_cond_wait((pthread_cond_t*)c, (pthread_mutex_t*)m)); }
int cnd_timedwait(cnd_t* restrict c, mtx_t* restrict m, const struct timespec* restrict t) {
  return map_error(pthread_cond_timedwait((pthread_cond_t*)c, (pthread_mutex_t*)m, t));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy((pthread_cond_t*)c); }
