/*
 * A fake libnvidia-ml.so.1 for tests: the real pynvml ctypes bindings load it instead of the driver's.
 *
 * State lives in a text file named by $FAKE_NVML_STATE and is re-read on every call, so a test
 * changes the "hardware" by atomically rewriting the file (write a temporary file, then rename).
 * One directive per line; `#` starts a comment; values with spaces are double-quoted:
 *
 *   driver version=550.54.15 loaded=1
 *   gpu index=0 uuid=GPU-0000 name="NVIDIA H100" power_mw=300000 counter=1 energy_mj=12345
 *       live=0 t0=0 lost=0 perm=1 energy_rc=0 power_rc=0 processes_rc=0 util_rc=0
 *       mig=0 mig_rc=0 max_mig=7 limit_mw=700000 limit_rc=0
 *   mig gpu=0 index=0 uuid=MIG-0000 sms=42 gi=1 ci=0
 *   proc gpu=0 pid=1234 mem_mib=2000 sm=75 samples=1000:70,2000:80 graphics=0 mig=0
 *
 * driver: loaded=0 makes init fail with NVML_ERROR_DRIVER_NOT_LOADED (and every later call too).
 * gpu:    energy_mj  the energy counter in millijoules;
 *         live=1     the counter also advances with CLOCK_REALTIME:
 *                    energy_mj + power_mw * (now - t0), with t0 in seconds since the epoch (mW*s = mJ);
 *         counter=0  nvmlDeviceGetTotalEnergyConsumption is NOT_SUPPORTED (pre-Volta: power only);
 *         lost=1     every call on the device returns NVML_ERROR_GPU_IS_LOST;
 *         perm=0     energy and power calls return NVML_ERROR_NO_PERMISSION;
 *         energy_rc, power_rc  force that NVML return code from the energy or power call (0: none);
 *         processes_rc, util_rc  the same for the running-process lists and process utilisation;
 *         mig=1      MIG mode is enabled (current and pending);
 *         mig_rc     force that return code from every MIG call on the GPU (3: a GPU without MIG);
 *         max_mig    what nvmlDeviceGetMaxMigDeviceCount says (7 as on A100/H100);
 *         limit_mw   the power limit in milliwatts: the enforced and default limit, and the top of
 *                    nvmlDeviceGetPowerManagementLimitConstraints (700 W, an H100 SXM's);
 *         limit_rc   force that return code from the three power limit calls (3: no power limit).
 * mig:    a MIG device of GPU `gpu` (its position in the file) at MIG device `index`, with `sms`
 *         multiprocessors in GPU instance `gi` and compute instance `ci`. Only seen while mig=1.
 * proc:   a process on GPU `gpu` (on its MIG device `index` with mig=index) using mem_mib MiB
 *         (mem_mib=na: NVML_VALUE_NOT_AVAILABLE); graphics=1 lists it as a graphics process.
 *         Utilisation samples: sm=75 is one sample stamped with CLOCK_REALTIME at each call (a steady
 *         load); samples=TS:SM,... are samples at fixed timestamps in microseconds. Process
 *         utilisation returns the samples newer than the caller's lastSeenTimeStamp, NOT_FOUND when
 *         there are none, and NOT_SUPPORTED under MIG (as the real driver does).
 *
 * Build with -DFAKE_NVML_NO_ENERGY_FN for a library without nvmlDeviceGetTotalEnergyConsumption,
 * as with a driver too old to have it; -DFAKE_NVML_NO_MIG_FN for one without the MIG functions;
 * -DFAKE_NVML_NO_PROCESSES_V3 for one with only the _v2 running-process functions.
 *
 * To add a device function: read the state with device_begin(), check what gates it (perm, a
 * forced return code), then answer from the struct fake_gpu fields you add to the parser.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- NVML types and return codes (the subset pynvml needs from us) ---------------------------- */

typedef int nvmlReturn_t;
typedef struct fake_gpu *nvmlDevice_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_UNKNOWN = 999,
};

/* ---- State ----------------------------------------------------------------------------------- */

#define MAX_GPUS 16
#define MAX_MIGS 8
#define MAX_PROCS 64
#define MAX_SAMPLES 8
#define TEXT_LEN 96
#define NVML_VALUE_NOT_AVAILABLE_ULL 0xFFFFFFFFFFFFFFFFULL
#define NO_INSTANCE 0xFFFFFFFFu
#define NVML_DEVICE_MIG_ENABLE 1

/* The layouts pynvml declares: c_nvmlProcessInfo_v2_t (also its _v3_t),
 * c_nvmlProcessUtilizationSample_t and c_nvmlDeviceAttributes. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil;
    unsigned int memUtil;
    unsigned int encUtil;
    unsigned int decUtil;
} nvmlProcessUtilizationSample_t;

typedef struct {
    unsigned int multiprocessorCount;
    unsigned int sharedCopyEngineCount;
    unsigned int sharedDecoderCount;
    unsigned int sharedEncoderCount;
    unsigned int sharedJpegCount;
    unsigned int sharedOfaCount;
    unsigned int gpuInstanceSliceCount;
    unsigned int computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;

struct fake_gpu {
    unsigned index;
    char uuid[TEXT_LEN];
    char name[TEXT_LEN];
    unsigned long long power_mw;
    unsigned long long energy_mj;
    double t0;
    int counter;
    int live;
    int lost;
    int perm;
    int energy_rc;
    int power_rc;
    int processes_rc;
    int util_rc;
    int mig_mode;
    int mig_rc;
    unsigned max_mig;
    unsigned long long limit_mw;
    int limit_rc;
    /* Set on MIG devices only (entries of fake_state.migs). */
    int present;
    unsigned parent;
    unsigned gi;
    unsigned ci;
    unsigned sms;
};

struct fake_proc {
    unsigned gpu;
    int mig; /* MIG device index, -1 for none */
    unsigned pid;
    unsigned long long mem_bytes;
    int graphics;
    int sm; /* a steady load stamped with the call time; -1 for none */
    unsigned samples;
    unsigned long long sample_ts[MAX_SAMPLES];
    unsigned sample_sm[MAX_SAMPLES];
};

struct fake_state {
    char driver_version[TEXT_LEN];
    int loaded;
    unsigned count;
    /* Handles point into these arrays, by position: they stay valid across re-reads. */
    struct fake_gpu gpus[MAX_GPUS];
    struct fake_gpu migs[MAX_GPUS][MAX_MIGS];
    unsigned procs;
    struct fake_proc proc[MAX_PROCS];
};

static struct fake_state g_state;
static int g_init_count;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void copy_text(char *dst, const char *src) {
    strncpy(dst, src, TEXT_LEN - 1);
    dst[TEXT_LEN - 1] = '\0';
}

/* Next `key=value` token of a line; a value in double quotes may hold spaces. Returns 0 at the end. */
static int next_pair(char **cursor, char **key, char **value) {
    char *p = *cursor;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0' || *p == '#') return 0;
    *key = p;
    while (*p && *p != '=' && !isspace((unsigned char)*p)) p++;
    if (*p != '=') { /* a bare word: skip it */
        if (*p) *p++ = '\0';
        *value = p;
        *cursor = p;
        return next_pair(cursor, key, value);
    }
    *p++ = '\0';
    if (*p == '"') {
        *value = ++p;
        while (*p && *p != '"') p++;
    } else {
        *value = p;
        while (*p && !isspace((unsigned char)*p)) p++;
    }
    if (*p) *p++ = '\0';
    *cursor = p;
    return 1;
}

static void parse_gpu(char *rest, struct fake_gpu *g) {
    char *key, *value;
    memset(g, 0, sizeof *g);
    g->counter = 1;
    g->perm = 1;
    g->max_mig = 7;
    g->limit_mw = 700000;
    while (next_pair(&rest, &key, &value)) {
        if (!strcmp(key, "index")) g->index = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "uuid")) copy_text(g->uuid, value);
        else if (!strcmp(key, "name")) copy_text(g->name, value);
        else if (!strcmp(key, "power_mw")) g->power_mw = strtoull(value, NULL, 10);
        else if (!strcmp(key, "energy_mj")) g->energy_mj = strtoull(value, NULL, 10);
        else if (!strcmp(key, "t0")) g->t0 = strtod(value, NULL);
        else if (!strcmp(key, "counter")) g->counter = atoi(value);
        else if (!strcmp(key, "live")) g->live = atoi(value);
        else if (!strcmp(key, "lost")) g->lost = atoi(value);
        else if (!strcmp(key, "perm")) g->perm = atoi(value);
        else if (!strcmp(key, "energy_rc")) g->energy_rc = atoi(value);
        else if (!strcmp(key, "power_rc")) g->power_rc = atoi(value);
        else if (!strcmp(key, "processes_rc")) g->processes_rc = atoi(value);
        else if (!strcmp(key, "util_rc")) g->util_rc = atoi(value);
        else if (!strcmp(key, "mig")) g->mig_mode = atoi(value);
        else if (!strcmp(key, "mig_rc")) g->mig_rc = atoi(value);
        else if (!strcmp(key, "max_mig")) g->max_mig = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "limit_mw")) g->limit_mw = strtoull(value, NULL, 10);
        else if (!strcmp(key, "limit_rc")) g->limit_rc = atoi(value);
    }
}

/* A MIG line goes to migs[gpu][index]; one naming a GPU or index out of range is ignored. */
static void parse_mig(char *rest, struct fake_state *s) {
    char *key, *value;
    struct fake_gpu m;
    unsigned gpu = MAX_GPUS, index = MAX_MIGS;
    memset(&m, 0, sizeof m);
    m.perm = 1;
    while (next_pair(&rest, &key, &value)) {
        if (!strcmp(key, "gpu")) gpu = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "index")) index = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "uuid")) copy_text(m.uuid, value);
        else if (!strcmp(key, "sms")) m.sms = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "gi")) m.gi = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "ci")) m.ci = (unsigned)strtoul(value, NULL, 10);
    }
    if (gpu >= MAX_GPUS || index >= MAX_MIGS) return;
    m.present = 1;
    m.parent = gpu;
    m.index = index;
    s->migs[gpu][index] = m;
}

/* `samples=TS:SM,TS:SM,...` */
static void parse_samples(char *value, struct fake_proc *p) {
    char *end;
    while (*value && p->samples < MAX_SAMPLES) {
        p->sample_ts[p->samples] = strtoull(value, &end, 10);
        if (*end != ':') return;
        p->sample_sm[p->samples++] = (unsigned)strtoul(end + 1, &end, 10);
        if (*end != ',') return;
        value = end + 1;
    }
}

static void parse_proc(char *rest, struct fake_proc *p) {
    char *key, *value;
    memset(p, 0, sizeof *p);
    p->mig = -1;
    p->sm = -1;
    while (next_pair(&rest, &key, &value)) {
        if (!strcmp(key, "gpu")) p->gpu = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "mig")) p->mig = atoi(value);
        else if (!strcmp(key, "pid")) p->pid = (unsigned)strtoul(value, NULL, 10);
        else if (!strcmp(key, "mem_mib"))
            p->mem_bytes = strcmp(value, "na") ? strtoull(value, NULL, 10) * 1024 * 1024
                                                : NVML_VALUE_NOT_AVAILABLE_ULL;
        else if (!strcmp(key, "graphics")) p->graphics = atoi(value);
        else if (!strcmp(key, "sm")) p->sm = atoi(value);
        else if (!strcmp(key, "samples")) parse_samples(value, p);
    }
}

static void parse_driver(char *rest, struct fake_state *s) {
    char *key, *value;
    while (next_pair(&rest, &key, &value)) {
        if (!strcmp(key, "version")) copy_text(s->driver_version, value);
        else if (!strcmp(key, "loaded")) s->loaded = atoi(value);
    }
}

/* Re-read the state file into g_state; a missing file reads as "no driver loaded". */
static void load_state(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    FILE *f = path ? fopen(path, "r") : NULL;
    char line[1024];

    memset(&g_state, 0, sizeof g_state);
    if (!f) return;
    g_state.loaded = 1;
    copy_text(g_state.driver_version, "0.0.0");
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!strncmp(p, "gpu ", 4) && g_state.count < MAX_GPUS) {
            parse_gpu(p + 4, &g_state.gpus[g_state.count++]);
        } else if (!strncmp(p, "driver ", 7)) {
            parse_driver(p + 7, &g_state);
        } else if (!strncmp(p, "mig ", 4)) {
            parse_mig(p + 4, &g_state);
        } else if (!strncmp(p, "proc ", 5) && g_state.procs < MAX_PROCS) {
            parse_proc(p + 5, &g_state.proc[g_state.procs++]);
        }
    }
    fclose(f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((unused)) static unsigned long long energy_now_mj(const struct fake_gpu *g) {
    double elapsed;
    if (!g->live) return g->energy_mj;
    elapsed = now_s() - g->t0;
    if (elapsed < 0) elapsed = 0;
    return g->energy_mj + (unsigned long long)((double)g->power_mw * elapsed); /* mW * s = mJ */
}

static nvmlReturn_t copy_out(char *dst, unsigned int length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

/* ---- Call gates: every exported function locks, re-reads the state, then checks these ---------- */

static nvmlReturn_t system_begin(void) {
    load_state();
    if (!g_state.loaded) return NVML_ERROR_DRIVER_NOT_LOADED;
    if (g_init_count == 0) return NVML_ERROR_UNINITIALIZED;
    return NVML_SUCCESS;
}

static nvmlReturn_t device_begin(nvmlDevice_t device) {
    nvmlReturn_t rc = system_begin();
    if (rc) return rc;
    if (device < g_state.gpus || device >= g_state.gpus + g_state.count) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->lost) return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

static int is_mig_handle(nvmlDevice_t device) {
    return device >= &g_state.migs[0][0] && device < &g_state.migs[0][0] + MAX_GPUS * MAX_MIGS;
}

/* The GPU a handle belongs to: itself, or a MIG device's parent. */
static struct fake_gpu *physical(nvmlDevice_t device) {
    return is_mig_handle(device) ? &g_state.gpus[device->parent] : device;
}

/* Gate of calls that also take a MIG device handle: the MIG device must exist, and MIG be enabled. */
static nvmlReturn_t any_device_begin(nvmlDevice_t device) {
    nvmlReturn_t rc;
    if (!is_mig_handle(device)) return device_begin(device);
    if ((rc = system_begin())) return rc;
    if (!device->present || device->parent >= g_state.count) return NVML_ERROR_INVALID_ARGUMENT;
    if (g_state.gpus[device->parent].lost) return NVML_ERROR_GPU_IS_LOST;
    if (g_state.gpus[device->parent].mig_mode != NVML_DEVICE_MIG_ENABLE) return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

/* Gate of the energy and power calls: permission first, then a forced return code. */
static nvmlReturn_t reading_gate(const struct fake_gpu *g, int forced_rc) {
    if (!g->perm) return NVML_ERROR_NO_PERMISSION;
    return forced_rc;
}

#define LOCKED(expr)                            \
    do {                                        \
        nvmlReturn_t locked_rc_;                \
        pthread_mutex_lock(&g_lock);            \
        locked_rc_ = (expr);                    \
        pthread_mutex_unlock(&g_lock);          \
        return locked_rc_;                      \
    } while (0)

/* ---- Library --------------------------------------------------------------------------------- */

static nvmlReturn_t do_init(void) {
    load_state();
    if (!g_state.loaded) return NVML_ERROR_DRIVER_NOT_LOADED;
    g_init_count++;
    return NVML_SUCCESS;
}

static nvmlReturn_t do_shutdown(void) {
    if (g_init_count == 0) return NVML_ERROR_UNINITIALIZED;
    g_init_count--;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; LOCKED(do_init()); }
EXPORT nvmlReturn_t nvmlInit_v2(void) { LOCKED(do_init()); }
EXPORT nvmlReturn_t nvmlInit(void) { LOCKED(do_init()); }
EXPORT nvmlReturn_t nvmlShutdown(void) { LOCKED(do_shutdown()); }

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

/* ---- System ---------------------------------------------------------------------------------- */

static nvmlReturn_t do_driver_version(char *version, unsigned int length) {
    nvmlReturn_t rc = system_begin();
    return rc ? rc : copy_out(version, length, g_state.driver_version);
}

static nvmlReturn_t do_count(unsigned int *count) {
    nvmlReturn_t rc = system_begin();
    if (rc) return rc;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = g_state.count;
    return NVML_SUCCESS;
}

static nvmlReturn_t do_handle_by_index(unsigned int index, nvmlDevice_t *device) {
    nvmlReturn_t rc = system_begin();
    if (rc) return rc;
    if (!device || index >= g_state.count) return NVML_ERROR_INVALID_ARGUMENT;
    if (g_state.gpus[index].lost) return NVML_ERROR_GPU_IS_LOST;
    *device = &g_state.gpus[index];
    return NVML_SUCCESS;
}

static nvmlReturn_t do_handle_by_uuid(const char *uuid, nvmlDevice_t *device) {
    nvmlReturn_t rc = system_begin();
    if (rc) return rc;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < g_state.count; i++) {
        if (!strcmp(g_state.gpus[i].uuid, uuid)) {
            if (g_state.gpus[i].lost) return NVML_ERROR_GPU_IS_LOST;
            *device = &g_state.gpus[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    LOCKED(do_driver_version(version, length));
}
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) { LOCKED(do_count(count)); }
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { LOCKED(do_count(count)); }
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    LOCKED(do_handle_by_index(index, device));
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    LOCKED(do_handle_by_index(index, device));
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    LOCKED(do_handle_by_uuid(uuid, device));
}

/* ---- Device identity ------------------------------------------------------------------------- */

static nvmlReturn_t do_uuid(nvmlDevice_t device, char *uuid, unsigned int length) {
    nvmlReturn_t rc = any_device_begin(device);
    return rc ? rc : copy_out(uuid, length, device->uuid);
}

static nvmlReturn_t do_name(nvmlDevice_t device, char *name, unsigned int length) {
    nvmlReturn_t rc = any_device_begin(device);
    return rc ? rc : copy_out(name, length, device->name);
}

static nvmlReturn_t do_index(nvmlDevice_t device, unsigned int *index) {
    nvmlReturn_t rc = device_begin(device);
    if (rc) return rc;
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    *index = device->index;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    LOCKED(do_uuid(device, uuid, length));
}
EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    LOCKED(do_name(device, name, length));
}
EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    LOCKED(do_index(device, index));
}

/* ---- Device power and energy ----------------------------------------------------------------- */

static nvmlReturn_t do_power(nvmlDevice_t device, unsigned int *power_mw) {
    nvmlReturn_t rc = device_begin(device);
    if (rc) return rc;
    if ((rc = reading_gate(device, device->power_rc))) return rc;
    if (!power_mw) return NVML_ERROR_INVALID_ARGUMENT;
    *power_mw = (unsigned int)device->power_mw;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power_mw) {
    LOCKED(do_power(device, power_mw));
}

/* The power limit calls: what may be set (min, max), and what is enforced. */
static nvmlReturn_t do_limit(nvmlDevice_t device, unsigned int *min_mw, unsigned int *limit_mw) {
    nvmlReturn_t rc = device_begin(device);
    if (rc) return rc;
    if (device->limit_rc) return device->limit_rc;
    if (!limit_mw) return NVML_ERROR_INVALID_ARGUMENT;
    if (min_mw) *min_mw = (unsigned int)(device->limit_mw / 2);
    *limit_mw = (unsigned int)device->limit_mw;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *min_mw,
                                                                 unsigned int *max_mw) {
    LOCKED(min_mw ? do_limit(device, min_mw, max_mw) : NVML_ERROR_INVALID_ARGUMENT);
}
EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit_mw) {
    LOCKED(do_limit(device, NULL, limit_mw));
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit_mw) {
    LOCKED(do_limit(device, NULL, limit_mw));
}

#ifndef FAKE_NVML_NO_ENERGY_FN
static nvmlReturn_t do_energy(nvmlDevice_t device, unsigned long long *energy_mj) {
    nvmlReturn_t rc = device_begin(device);
    if (rc) return rc;
    if ((rc = reading_gate(device, device->energy_rc))) return rc;
    if (!device->counter) return NVML_ERROR_NOT_SUPPORTED;
    if (!energy_mj) return NVML_ERROR_INVALID_ARGUMENT;
    *energy_mj = energy_now_mj(device);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy_mj) {
    LOCKED(do_energy(device, energy_mj));
}
#endif

/* ---- Processes ------------------------------------------------------------------------------- */

/* Does process `p` show on `device`? A GPU lists all its processes (under MIG too, as for root);
 * a MIG device lists those on it. */
static int proc_on(const struct fake_proc *p, nvmlDevice_t device, int graphics) {
    if (p->graphics != graphics) return 0;
    if (is_mig_handle(device)) return p->gpu == device->parent && p->mig == (int)device->index;
    return p->gpu == (unsigned)(device - g_state.gpus);
}

static void process_info(const struct fake_proc *p, nvmlProcessInfo_t *info) {
    const struct fake_gpu *mig = NULL;
    if (p->mig >= 0 && p->mig < MAX_MIGS && p->gpu < MAX_GPUS && g_state.migs[p->gpu][p->mig].present)
        mig = &g_state.migs[p->gpu][p->mig];
    info->pid = p->pid;
    info->usedGpuMemory = p->mem_bytes;
    info->gpuInstanceId = mig ? mig->gi : NO_INSTANCE;
    info->computeInstanceId = mig ? mig->ci : NO_INSTANCE;
}

/* The size-query protocol of nvmlDeviceGet*RunningProcesses: a NULL or short buffer gets the count
 * and INSUFFICIENT_SIZE (SUCCESS when there are none). */
static nvmlReturn_t do_processes(nvmlDevice_t device, int graphics, unsigned int *count, nvmlProcessInfo_t *infos) {
    nvmlReturn_t rc = any_device_begin(device);
    unsigned n = 0, i;
    if (rc) return rc;
    if ((rc = physical(device)->processes_rc)) return rc;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    for (i = 0; i < g_state.procs; i++) n += proc_on(&g_state.proc[i], device, graphics);
    if (!infos || *count < n) {
        *count = n;
        return n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    }
    *count = 0;
    for (i = 0; i < g_state.procs; i++)
        if (proc_on(&g_state.proc[i], device, graphics)) process_info(&g_state.proc[i], &infos[(*count)++]);
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_NO_PROCESSES_V3
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    LOCKED(do_processes(device, 0, count, infos));
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    LOCKED(do_processes(device, 1, count, infos));
}
#endif
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    LOCKED(do_processes(device, 0, count, infos));
}
EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    LOCKED(do_processes(device, 1, count, infos));
}

/* ---- Process utilisation --------------------------------------------------------------------- */

/* Counts the samples newer than `since` of the processes on GPU `device` (not on a MIG device),
 * copying them into `out` when given. */
static unsigned process_samples(nvmlDevice_t device, unsigned long long since, nvmlProcessUtilizationSample_t *out) {
    unsigned long long now_us = (unsigned long long)(now_s() * 1e6);
    unsigned n = 0, i, j;
    for (i = 0; i < g_state.procs; i++) {
        const struct fake_proc *p = &g_state.proc[i];
        if (p->gpu != (unsigned)(device - g_state.gpus) || p->mig >= 0) continue;
        for (j = 0; j <= p->samples; j++) {
            unsigned long long ts = j < p->samples ? p->sample_ts[j] : now_us;
            int sm = j < p->samples ? (int)p->sample_sm[j] : p->sm;
            if (sm < 0 || ts <= since) continue;
            if (out) {
                memset(&out[n], 0, sizeof out[n]);
                out[n].pid = p->pid;
                out[n].timeStamp = ts;
                out[n].smUtil = (unsigned)sm;
            }
            n++;
        }
    }
    return n;
}

static nvmlReturn_t do_process_utilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *samples,
                                           unsigned int *count, unsigned long long since) {
    nvmlReturn_t rc = any_device_begin(device);
    unsigned n;
    if (rc) return rc;
    if ((rc = physical(device)->util_rc)) return rc;
    if (is_mig_handle(device) || device->mig_mode == NVML_DEVICE_MIG_ENABLE) return NVML_ERROR_NOT_SUPPORTED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    n = process_samples(device, since, NULL);
    if (n == 0) return NVML_ERROR_NOT_FOUND;
    if (!samples || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *count = process_samples(device, since, samples);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *samples,
                                                    unsigned int *count, unsigned long long lastSeenTimeStamp) {
    LOCKED(do_process_utilization(device, samples, count, lastSeenTimeStamp));
}

/* ---- MIG ------------------------------------------------------------------------------------- */

#ifndef FAKE_NVML_NO_MIG_FN
static nvmlReturn_t do_mig_mode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    nvmlReturn_t rc = device_begin(device);
    if (rc) return rc;
    if ((rc = device->mig_rc)) return rc;
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    *current = *pending = (unsigned)device->mig_mode;
    return NVML_SUCCESS;
}

static nvmlReturn_t do_max_mig(nvmlDevice_t device, unsigned int *count) {
    nvmlReturn_t rc = device_begin(device);
    if (rc) return rc;
    if ((rc = device->mig_rc)) return rc;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = device->max_mig;
    return NVML_SUCCESS;
}

static nvmlReturn_t do_mig_handle(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig) {
    nvmlReturn_t rc = device_begin(device);
    if (rc) return rc;
    if ((rc = device->mig_rc)) return rc;
    if (!mig || index >= device->max_mig || index >= MAX_MIGS || device->mig_mode != NVML_DEVICE_MIG_ENABLE)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!g_state.migs[device - g_state.gpus][index].present) return NVML_ERROR_NOT_FOUND;
    *mig = &g_state.migs[device - g_state.gpus][index];
    return NVML_SUCCESS;
}

/* Like the driver's, this answers for MIG device handles only. */
static nvmlReturn_t do_attributes(nvmlDevice_t device, nvmlDeviceAttributes_t *attributes) {
    nvmlReturn_t rc = any_device_begin(device);
    if (rc) return rc;
    if ((rc = physical(device)->mig_rc)) return rc;
    if (!is_mig_handle(device)) return NVML_ERROR_NOT_SUPPORTED;
    if (!attributes) return NVML_ERROR_INVALID_ARGUMENT;
    memset(attributes, 0, sizeof *attributes);
    attributes->multiprocessorCount = device->sms;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    LOCKED(do_mig_mode(device, current, pending));
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    LOCKED(do_max_mig(device, count));
}
EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig) {
    LOCKED(do_mig_handle(device, index, mig));
}
EXPORT nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t device, nvmlDeviceAttributes_t *attributes) {
    LOCKED(do_attributes(device, attributes));
}
EXPORT nvmlReturn_t nvmlDeviceGetAttributes(nvmlDevice_t device, nvmlDeviceAttributes_t *attributes) {
    LOCKED(do_attributes(device, attributes));
}
#endif
