/*
 * Replays of stored history through a job's policy (owner: svc_replay.c): to bring a
 * loaded job's state up to its last report (svc_job.c), and for rewinds (svc_rewind.c).
 */
#ifndef GLR_SVC_REPLAY_INT_H
#define GLR_SVC_REPLAY_INT_H

#include <stdint.h>

#include "core/glr.h"

struct svc;

/* Where a replay of stored history has brought a scheduler. */
struct svc_replay_progress {
    int64_t last_step;  /* the last step replayed, or as given when none was */
    int64_t reports;    /* counted on from the value given */
    int64_t updated_ms; /* the last replayed report's time, or as given */
};

/*
 * Steps sched through the stored history of job seq from from_step to to_step, checking
 * that each step gives the answer that was stored, and moves *progress on. Holds a reader
 * connection meanwhile. Returns GLR_OK, GLR_ECORRUPT (an answer differs) or GLR_EIO.
 */
int svc_replay_history(struct svc *svc, int64_t seq, struct glr_sched *sched, int64_t from_step,
                       int64_t to_step, struct svc_replay_progress *progress, char *err);

/*
 * Puts sched in its state right after to_step of job seq: the nearest snapshot at or
 * before it (or the initial state), then the history after the snapshot.
 */
int svc_replay_to(struct svc *svc, int64_t seq, struct glr_sched *sched, int64_t to_step,
                  struct svc_replay_progress *progress, char *err);

#endif
