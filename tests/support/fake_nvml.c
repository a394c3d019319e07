/*
 * A fake libnvidia-ml.so.1 for tests: the real pynvml ctypes bindings load it instead of the driver's.
 *
 * State lives in a text file named by $FAKE_NVML_STATE, looked at on every call and parsed again
 * when it changed (fake_state.h), so a test changes the "hardware" by atomically rewriting the file
 * (write a temporary file, then rename).
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
 * forced return code), then answer from the struct fake_gpu fields you add to GPU_FIELDS.
 */
#define _POSIX_C_SOURCE 200809L

#include <time.h>

#include "fake_state.h"

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

static const struct fake_gpu GPU_DEFAULTS = {.counter = 1, .perm = 1, .max_mig = 7, .limit_mw = 700000};
static const struct field GPU_FIELDS[] = {
    GPU_FIELD("index", index, FIELD_UINT),
    GPU_FIELD("uuid", uuid, FIELD_TEXT),
    GPU_FIELD("name", name, FIELD_TEXT),
    GPU_FIELD("power_mw", power_mw, FIELD_ULL),
    GPU_FIELD("energy_mj", energy_mj, FIELD_ULL),
    GPU_FIELD("t0", t0, FIELD_DOUBLE),
    GPU_FIELD("counter", counter, FIELD_INT),
    GPU_FIELD("live", live, FIELD_INT),
    GPU_FIELD("lost", lost, FIELD_INT),
    GPU_FIELD("perm", perm, FIELD_INT),
    GPU_FIELD("energy_rc", energy_rc, FIELD_INT),
    GPU_FIELD("power_rc", power_rc, FIELD_INT),
    GPU_FIELD("processes_rc", processes_rc, FIELD_INT),
    GPU_FIELD("util_rc", util_rc, FIELD_INT),
    GPU_FIELD("mig", mig_mode, FIELD_INT),
    GPU_FIELD("mig_rc", mig_rc, FIELD_INT),
    GPU_FIELD("max_mig", max_mig, FIELD_UINT),
    GPU_FIELD("limit_mw", limit_mw, FIELD_ULL),
    GPU_FIELD("limit_rc", limit_rc, FIELD_INT),
};
/* A MIG line's fields; `gpu` and `index` place it (out of range when missing). */
static const struct fake_gpu MIG_DEFAULTS = {.perm = 1, .parent = MAX_GPUS, .index = MAX_MIGS};
static const struct field MIG_FIELDS[] = {
    GPU_FIELD("gpu", parent, FIELD_UINT),
    GPU_FIELD("index", index, FIELD_UINT),
    GPU_FIELD("uuid", uuid, FIELD_TEXT),
    GPU_FIELD("sms", sms, FIELD_UINT),
    GPU_FIELD("gi", gi, FIELD_UINT),
    GPU_FIELD("ci", ci, FIELD_UINT),
};
static const struct fake_proc PROC_DEFAULTS = {.mig = -1, .sm = -1};
static const struct field PROC_FIELDS[] = {
    FIELD(struct fake_proc, "gpu", gpu, FIELD_UINT),
    FIELD(struct fake_proc, "mig", mig, FIELD_INT),
    FIELD(struct fake_proc, "pid", pid, FIELD_UINT),
    FIELD(struct fake_proc, "graphics", graphics, FIELD_INT),
    FIELD(struct fake_proc, "sm", sm, FIELD_INT),
};
static const struct field DRIVER_FIELDS[] = {
    FIELD(struct fake_state, "version", driver_version, FIELD_TEXT),
    FIELD(struct fake_state, "loaded", loaded, FIELD_INT),
};

/* A MIG line goes to migs[gpu][index]; one naming a GPU or index out of range is ignored. */
static void parse_mig(char *rest) {
    struct fake_gpu m = MIG_DEFAULTS;
    SET_FIELDS(rest, &m, MIG_FIELDS, NULL);
    if (m.parent >= MAX_GPUS || m.index >= MAX_MIGS) return;
    m.present = 1;
    g_state.migs[m.parent][m.index] = m;
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

/* The proc keys that are no plain field. */
static void proc_key(void *record, const char *key, char *value) {
    struct fake_proc *p = record;
    if (!strcmp(key, "mem_mib"))
        p->mem_bytes = strcmp(value, "na") ? strtoull(value, NULL, 10) * 1024 * 1024 : NVML_VALUE_NOT_AVAILABLE_ULL;
    else if (!strcmp(key, "samples"))
        parse_samples(value, p);
}

/* Empty state: no driver without a file, a loaded one of version 0.0.0 with one. */
static void reset_state(int present) {
    memset(&g_state, 0, sizeof g_state);
    g_state.loaded = present;
    if (present) copy_text(g_state.driver_version, TEXT_LEN, "0.0.0");
}

static void parse_line(char *line) {
    char *rest;
    if (directive(line, "driver", &rest)) {
        SET_FIELDS(rest, &g_state, DRIVER_FIELDS, NULL);
    } else if (directive(line, "gpu", &rest) && g_state.count < MAX_GPUS) {
        g_state.gpus[g_state.count] = GPU_DEFAULTS;
        SET_FIELDS(rest, &g_state.gpus[g_state.count++], GPU_FIELDS, NULL);
    } else if (directive(line, "mig", &rest)) {
        parse_mig(rest);
    } else if (directive(line, "proc", &rest) && g_state.procs < MAX_PROCS) {
        g_state.proc[g_state.procs] = PROC_DEFAULTS;
        SET_FIELDS(rest, &g_state.proc[g_state.procs++], PROC_FIELDS, proc_key);
    }
}

/* Bring g_state up to the state file (parsed again only when it changed); no file: no driver. */
static void load_state(void) {
    state_file_load(&g_file, "FAKE_NVML_STATE", reset_state, parse_line);
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

/* ---- Call gates: every exported function locks, loads the state, then checks these ---------- */

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
