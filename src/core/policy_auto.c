/*
 * The auto policy: GreedyLR's idea (follow the loss) with settings relative to the job,
 * annealing to zero over a declared horizon, a probe that raises the learning rate only
 * while raising it makes the loss fall faster, cuts on a stalled or diverging loss, and a
 * client's stability cap. The README ("Policies", auto) is its description; the model in
 * tests/auto_model.py follows that description, and the golden vectors it makes keep the
 * two equal to the last bit.
 *
 * Versioned: the config records "version", and a job keeps the behaviour of the version
 * it was created with. A new version adds a branch here; it never changes an old one.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/policy.h"

/* pi to double precision; M_PI is not part of C11. */
#define PI 3.14159265358979323846

/* The newest version: what a job created without "version" gets. */
#define AUTO_VERSION 1
/* Automatic patience: this fraction of the horizon, and never below PATIENCE_MIN. */
#define AUTO_PATIENCE_FRACTION 0.05
#define AUTO_PATIENCE_MIN      2
/* Without a horizon, at least this many: the first reports of a run say little. */
#define AUTO_PATIENCE_MIN_NO_HORIZON 10
/* Largest increase_factor: a probe that multiplies the rate by more is no probe. */
#define AUTO_INCREASE_MAX 100.0

enum anneal { ANNEAL_COSINE, ANNEAL_LINEAR, ANNEAL_NONE };
static const char *const anneal_names[] = {"cosine", "linear", "none", NULL};

/*
 * Where the probe stands. WARM: the first period, whose fall is the start-up's and says
 * nothing of the rate. BASE: measuring the fall at the current rate. PROBE: measuring it
 * after a raise. SETTLED: no more raises in this run.
 */
enum phase { PHASE_WARM, PHASE_BASE, PHASE_PROBE, PHASE_SETTLED };
#define PHASE_COUNT 4

struct autolr {
    /* configuration */
    int64_t version;
    int64_t total_steps; /* the declared horizon in reports; 0: unknown */
    int64_t patience;    /* in reports; 0: automatic */
    double threshold;    /* relative improvement that counts */
    double decrease_factor;
    double increase_factor;
    double min_factor; /* bounds of the scale, as multiples of the initial rates */
    double max_factor;
    double diverge_threshold; /* smoothed loss this far (relative) above its best: diverged */
    double probe_until;       /* fraction of the horizon after which no probe starts */
    double probe_gain;        /* how much faster the loss must fall to keep a raise */
    int anneal;
    double anneal_start; /* fraction of the horizon before the annealing starts */
    double warmup;       /* fraction of the horizon over which the rate ramps up */

    /* state */
    double scale;       /* the rates are init_lrs * scale, capped, times the annealing factor */
    bool have_loss;     /* ema, best and mark are set (after the first finite loss) */
    double ema;         /* the smoothed loss */
    double best;        /* the lowest smoothed loss */
    double mark;        /* the smoothed loss at the start of the current period */
    double rate_base;   /* the relative fall of the period before the probe's */
    int64_t num_bad;    /* reports since the smoothed loss last improved */
    int64_t cooldown;   /* reports left before the loss is judged again */
    int64_t reports;    /* reports so far */
    int64_t next_check; /* the report that ends the current period */
    enum phase phase;
};

static int auto_create(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    struct autolr a = {0};
    int rc;
    if ((rc = cfg_int(cfg, "version", AUTO_VERSION, 1, AUTO_VERSION, &a.version, err)) ||
        (rc = cfg_int(cfg, "total_steps", 0, 0, GLR_MAX_COUNT, &a.total_steps, err)) ||
        (rc = cfg_int(cfg, "patience", 0, 0, GLR_MAX_COUNT, &a.patience, err)) ||
        (rc = cfg_double(cfg, "threshold", 1e-3, &a.threshold, err)) ||
        (rc = cfg_double(cfg, "decrease_factor", 0.5, &a.decrease_factor, err)) ||
        (rc = cfg_double(cfg, "increase_factor", 2.0, &a.increase_factor, err)) ||
        (rc = cfg_double(cfg, "min_factor", 1e-3, &a.min_factor, err)) ||
        (rc = cfg_double(cfg, "max_factor", 10.0, &a.max_factor, err)) ||
        (rc = cfg_double(cfg, "diverge_threshold", 1.0, &a.diverge_threshold, err)) ||
        (rc = cfg_double(cfg, "probe_until", 0.5, &a.probe_until, err)) ||
        (rc = cfg_double(cfg, "probe_gain", 1.25, &a.probe_gain, err)) ||
        (rc = cfg_enum(cfg, "anneal", anneal_names, ANNEAL_LINEAR, &a.anneal, err)) ||
        (rc = cfg_double(cfg, "anneal_start", 0.75, &a.anneal_start, err)) ||
        (rc = cfg_double(cfg, "warmup", 0.05, &a.warmup, err)))
        return rc;
    if (!(a.threshold >= 0 && a.threshold < 1))
        return glr_fail(err, GLR_EINVAL, "threshold must be in [0, 1), got %s",
                        jsonx_text(a.threshold).s);
    if (!(a.decrease_factor > 0 && a.decrease_factor < 1))
        return glr_fail(err, GLR_EINVAL,
                        "decrease_factor must be between 0 and 1 (exclusive), "
                        "got %s",
                        jsonx_text(a.decrease_factor).s);
    if (!(a.increase_factor > 1 && a.increase_factor <= AUTO_INCREASE_MAX))
        return glr_fail(err, GLR_EINVAL, "increase_factor must be above 1 and at most %g, got %s",
                        AUTO_INCREASE_MAX, jsonx_text(a.increase_factor).s);
    if (!(a.min_factor > 0 && a.min_factor <= 1))
        return glr_fail(err, GLR_EINVAL, "min_factor must be in (0, 1], got %s",
                        jsonx_text(a.min_factor).s);
    if (!(a.max_factor >= 1 && a.max_factor <= GLR_MAX_COUNT))
        return glr_fail(err, GLR_EINVAL, "max_factor must be in [1, %d], got %s", GLR_MAX_COUNT,
                        jsonx_text(a.max_factor).s);
    if (!(a.diverge_threshold > 0))
        return glr_fail(err, GLR_EINVAL, "diverge_threshold must be > 0, got %s",
                        jsonx_text(a.diverge_threshold).s);
    if (!(a.probe_until >= 0 && a.probe_until <= 1))
        return glr_fail(err, GLR_EINVAL, "probe_until must be in [0, 1], got %s",
                        jsonx_text(a.probe_until).s);
    if (!(a.probe_gain >= 1 && a.probe_gain <= AUTO_INCREASE_MAX))
        return glr_fail(err, GLR_EINVAL, "probe_gain must be in [1, %g], got %s", AUTO_INCREASE_MAX,
                        jsonx_text(a.probe_gain).s);
    if (!(a.anneal_start >= 0 && a.anneal_start < 1))
        return glr_fail(err, GLR_EINVAL, "anneal_start must be in [0, 1), got %s",
                        jsonx_text(a.anneal_start).s);
    if (!(a.warmup >= 0 && a.warmup <= 0.5))
        return glr_fail(err, GLR_EINVAL, "warmup must be in [0, 0.5], got %s",
                        jsonx_text(a.warmup).s);
    /* The largest rate a job may reach must be a finite number. */
    for (size_t i = 0; i < sched->groups; i++)
        if (!isfinite(sched->init_lrs[i] * a.max_factor))
            return glr_fail(err, GLR_EINVAL, "lr %s of group %zu times max_factor %s is not finite",
                            jsonx_text(sched->init_lrs[i]).s, i, jsonx_text(a.max_factor).s);
    struct autolr *priv = malloc(sizeof(*priv));
    if (!priv)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    *priv = a;
    sched->priv = priv;
    return GLR_OK;
}

static void auto_destroy(struct glr_sched *sched)
{
    free(sched->priv);
}

static double envelope(const struct autolr *a, int64_t reports);
static double warmup_factor(const struct autolr *a, int64_t reports);

static void auto_reset(struct glr_sched *sched)
{
    struct autolr *a = sched->priv;
    /* The first step is the warmup's first: its rate is the one a new job answers. */
    for (size_t i = 0; i < sched->groups; i++)
        sched->lrs[i] = (sched->init_lrs[i] * 1.0) * envelope(a, 0) * warmup_factor(a, 0);
    a->scale = 1.0;
    a->have_loss = false;
    a->ema = 0;
    a->best = 0;
    a->mark = 0;
    a->rate_base = 0;
    a->num_bad = 0;
    a->cooldown = 0;
    a->reports = 0;
    a->next_check = 0;
    a->phase = PHASE_WARM;
}

/*
 * The patience after `reports` reports: the setting, else a fraction of the horizon, so
 * that one default fits a report per epoch and a report per step alike. The horizon is
 * the declared total_steps, or twice the reports so far when none was declared.
 */
static int64_t patience_at(const struct autolr *a, int64_t reports)
{
    if (a->patience > 0)
        return a->patience;
    int64_t horizon = a->total_steps > 0 ? a->total_steps : 2 * reports;
    int64_t least = a->total_steps > 0 ? AUTO_PATIENCE_MIN : AUTO_PATIENCE_MIN_NO_HORIZON;
    int64_t p = (int64_t)floor(AUTO_PATIENCE_FRACTION * (double)horizon + 0.5);
    return p > least ? p : least;
}

/* The annealing factor after `reports` reports: 1 without a horizon, 0 at its end. */
static double envelope(const struct autolr *a, int64_t reports)
{
    if (a->total_steps == 0 || a->anneal == ANNEAL_NONE)
        return 1.0;
    double start = a->anneal_start * (double)a->total_steps;
    double done = (double)(reports < a->total_steps ? reports : a->total_steps);
    if (done <= start)
        return 1.0;
    double progress = (done - start) / ((double)a->total_steps - start);
    if (a->anneal == ANNEAL_LINEAR)
        return 1.0 - progress;
    return (1.0 + cos(PI * progress)) / 2.0;
}

/*
 * The warmup's factor after `reports` reports: a ramp over the first
 * round(warmup * total_steps) reports, 1 without a horizon and after the ramp.
 */
static double warmup_factor(const struct autolr *a, int64_t reports)
{
    if (a->total_steps == 0)
        return 1.0;
    int64_t length = (int64_t)floor(a->warmup * (double)a->total_steps + 0.5);
    if (reports + 1 >= length)
        return 1.0;
    return (double)(reports + 1) / (double)length;
}

static void lower(struct autolr *a)
{
    a->scale = fmax(a->scale * a->decrease_factor, a->min_factor);
}

/*
 * True when a raise may be tried now: within max_factor, before probe_until of the
 * horizon, and below the client's cap in every group (a raise above it changes nothing).
 */
static bool may_probe(const struct glr_sched *sched, const struct autolr *a, int64_t reports,
                      double cap)
{
    if (a->scale * a->increase_factor > a->max_factor)
        return false;
    if (a->total_steps > 0 && (double)reports > a->probe_until * (double)a->total_steps)
        return false;
    for (size_t i = 0; i < sched->groups; i++)
        if (sched->init_lrs[i] * (a->scale * a->increase_factor) > cap)
            return false;
    return true;
}

/* After a cut: let the loss settle for p reports, measure from here, raise no more. */
static void settle_after_cut(struct autolr *a, int64_t reports, int64_t p)
{
    a->cooldown = p;
    a->num_bad = 0;
    a->phase = PHASE_SETTLED;
    a->mark = a->ema;
    a->next_check = reports + p;
}

/* Judges one finite loss: the smoothed loss, cuts, and the probe. Returns the event. */
static enum glr_event judge_loss(const struct glr_sched *sched, struct autolr *a, double loss,
                                 int64_t reports, int64_t p, double cap)
{
    if (!a->have_loss) {
        a->have_loss = true;
        a->ema = loss;
        a->best = loss;
        a->mark = loss;
        a->next_check = reports + p;
        return GLR_EVENT_HOLD;
    }
    double alpha = 2.0 / ((double)p + 1.0);
    a->ema = a->ema + alpha * (loss - a->ema);
    if (a->ema - a->best > a->diverge_threshold * fabs(a->best)) {
        lower(a);
        settle_after_cut(a, reports, p);
        /*
         * Judged from here on: another cut needs the loss to rise that far again, so that a
         * loss which jumped and stays up is cut once, not at every report to the floor.
         */
        a->best = a->ema;
        return GLR_EVENT_DIVERGED;
    }
    if (a->cooldown > 0) {
        a->cooldown -= 1;
        if (a->ema < a->best)
            a->best = a->ema;
        return GLR_EVENT_COOLDOWN;
    }
    if (a->ema < a->best - a->threshold * fabs(a->best)) {
        a->best = a->ema;
        a->num_bad = 0;
    } else {
        a->num_bad += 1;
    }
    if (a->num_bad >= p) {
        lower(a);
        settle_after_cut(a, reports, p);
        return GLR_EVENT_DECREASE;
    }
    if (reports < a->next_check)
        return GLR_EVENT_HOLD;

    /* A period ended: how far the smoothed loss fell in it, relative to where it began. */
    double rate = a->mark == 0 ? 0.0 : (a->mark - a->ema) / fabs(a->mark);
    a->mark = a->ema;
    a->next_check = reports + p;
    switch (a->phase) {
    case PHASE_WARM:
        a->phase = PHASE_BASE;
        break;
    case PHASE_BASE:
        /* A loss that did not fall, or that is off its best, is no sign of a rate too low. */
        if (rate > 0 && a->num_bad == 0 && may_probe(sched, a, reports, cap)) {
            a->rate_base = rate;
            a->scale = a->scale * a->increase_factor;
            a->phase = PHASE_PROBE;
            return GLR_EVENT_INCREASE;
        }
        break;
    case PHASE_PROBE:
        /* The raise is kept only when the loss fell faster after it than before. */
        if (rate > 0 && rate > a->rate_base * a->probe_gain) {
            if (a->num_bad == 0 && may_probe(sched, a, reports, cap)) {
                a->rate_base = rate;
                a->scale = a->scale * a->increase_factor;
                return GLR_EVENT_INCREASE;
            }
            a->phase = PHASE_SETTLED;
            break;
        }
        a->scale = a->scale / a->increase_factor;
        a->phase = PHASE_SETTLED;
        return GLR_EVENT_DECREASE;
    case PHASE_SETTLED:
        break;
    }
    return GLR_EVENT_HOLD;
}

static void auto_step(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                      struct glr_step_result *result)
{
    struct autolr *a = sched->priv;
    (void)step; /* the horizon counts reports, so that gaps in step numbers do not matter */
    a->reports += 1;
    int64_t reports = a->reports;
    int64_t p = patience_at(a, reports);
    enum glr_event event;
    if (isfinite(metric)) {
        event = judge_loss(sched, a, metric, reports, p, lr_cap);
    } else {
        lower(a);
        settle_after_cut(a, reports, p);
        event = GLR_EVENT_DIVERGED;
    }
    double env = envelope(a, reports);
    double before = envelope(a, reports - 1);
    double warm = warmup_factor(a, reports);
    bool capped = false;
    for (size_t i = 0; i < sched->groups; i++) {
        double base = sched->init_lrs[i] * a->scale;
        if (base > lr_cap) {
            base = lr_cap;
            capped = true;
        }
        sched->lrs[i] = base * env * warm;
    }
    if (event == GLR_EVENT_HOLD && capped)
        event = GLR_EVENT_CAPPED;
    else if (event == GLR_EVENT_HOLD && warm > warmup_factor(a, reports - 1))
        event = GLR_EVENT_WARMUP;
    else if (event == GLR_EVENT_HOLD && env < before)
        event = GLR_EVENT_ANNEAL;
    result->event = event;
    result->metric = isfinite(metric) && a->have_loss ? a->ema : metric;
}

static bool auto_config_json(const struct glr_sched *sched, cJSON *o)
{
    const struct autolr *a = sched->priv;
    return jsonx_add_integer(o, "version", a->version) &&
           jsonx_add_integer(o, "total_steps", a->total_steps) &&
           jsonx_add_integer(o, "patience", a->patience) &&
           jsonx_add_number(o, "threshold", a->threshold) &&
           jsonx_add_number(o, "decrease_factor", a->decrease_factor) &&
           jsonx_add_number(o, "increase_factor", a->increase_factor) &&
           jsonx_add_number(o, "min_factor", a->min_factor) &&
           jsonx_add_number(o, "max_factor", a->max_factor) &&
           jsonx_add_number(o, "diverge_threshold", a->diverge_threshold) &&
           jsonx_add_number(o, "probe_until", a->probe_until) &&
           jsonx_add_number(o, "probe_gain", a->probe_gain) &&
           cJSON_AddStringToObject(o, "anneal", anneal_names[a->anneal]) &&
           jsonx_add_number(o, "anneal_start", a->anneal_start) &&
           jsonx_add_number(o, "warmup", a->warmup);
}

static const char *const phase_names[PHASE_COUNT] = {"warm", "base", "probe", "settled"};

static bool add_counters(const struct autolr *a, cJSON *o)
{
    return jsonx_add_number(o, "scale", a->scale) && jsonx_add_integer(o, "num_bad", a->num_bad) &&
           jsonx_add_integer(o, "cooldown", a->cooldown) &&
           jsonx_add_integer(o, "reports", a->reports) &&
           jsonx_add_integer(o, "next_check", a->next_check) &&
           cJSON_AddStringToObject(o, "phase", phase_names[a->phase]);
}

/* The smoothed losses, or null before the first finite loss. */
static bool add_losses(const struct autolr *a, cJSON *o)
{
    if (!a->have_loss)
        return cJSON_AddNullToObject(o, "ema") && cJSON_AddNullToObject(o, "best") &&
               cJSON_AddNullToObject(o, "mark");
    return jsonx_add_number(o, "ema", a->ema) && jsonx_add_number(o, "best", a->best) &&
           jsonx_add_number(o, "mark", a->mark);
}

static bool auto_counters_json(const struct glr_sched *sched, cJSON *o)
{
    const struct autolr *a = sched->priv;
    return add_counters(a, o) && add_losses(a, o);
}

static bool auto_state_save(const struct glr_sched *sched, cJSON *o)
{
    const struct autolr *a = sched->priv;
    return add_counters(a, o) && add_losses(a, o) && jsonx_add_number(o, "rate_base", a->rate_base);
}

static int auto_state_load(struct glr_sched *sched, const cJSON *o, char *err)
{
    struct autolr *a = sched->priv;
    struct autolr tmp = *a;
    int rc;
    if ((rc = policy_state_get_double(o, "scale", &tmp.scale, err)) ||
        (rc = policy_state_get_count(o, "num_bad", GLR_MAX_COUNT, &tmp.num_bad, err)) ||
        (rc = policy_state_get_count(o, "cooldown", GLR_MAX_COUNT, &tmp.cooldown, err)) ||
        (rc = policy_state_get_count(o, "reports", GLR_MAX_STEP + 1, &tmp.reports, err)) ||
        (rc = policy_state_get_count(o, "next_check", GLR_MAX_STEP + GLR_MAX_COUNT + 1,
                                     &tmp.next_check, err)) ||
        (rc = policy_state_get_double(o, "rate_base", &tmp.rate_base, err)))
        return rc;
    if (!(tmp.scale >= a->min_factor && tmp.scale <= a->max_factor))
        return glr_fail(err, GLR_ECORRUPT,
                        "saved state: scale must be in [min_factor, max_factor]");
    if (!isfinite(tmp.rate_base))
        return glr_fail(err, GLR_ECORRUPT, "saved state: rate_base must be finite");
    const cJSON *phase = cJSON_GetObjectItemCaseSensitive(o, "phase");
    int found = -1;
    for (int i = 0; i < PHASE_COUNT && cJSON_IsString(phase); i++)
        if (strcmp(phase->valuestring, phase_names[i]) == 0)
            found = i;
    if (found < 0)
        return glr_fail(err, GLR_ECORRUPT,
                        "saved state: phase must be warm, base, probe or settled");
    tmp.phase = (enum phase)found;
    const cJSON *ema = cJSON_GetObjectItemCaseSensitive(o, "ema");
    tmp.have_loss = !cJSON_IsNull(ema);
    if ((rc = policy_state_get_optional(o, "ema", tmp.have_loss, "ema", &tmp.ema, err)) ||
        (rc = policy_state_get_optional(o, "best", tmp.have_loss, "ema", &tmp.best, err)) ||
        (rc = policy_state_get_optional(o, "mark", tmp.have_loss, "ema", &tmp.mark, err)))
        return rc;
    *a = tmp;
    return GLR_OK;
}

const struct glr_policy glr_policy_auto = {
    .name = "auto",
    .takes_lr_cap = true,
    .create = auto_create,
    .destroy = auto_destroy,
    .reset = auto_reset,
    .step = auto_step,
    .config_json = auto_config_json,
    .counters_json = auto_counters_json,
    .state_save = auto_state_save,
    .state_load = auto_state_load,
};
