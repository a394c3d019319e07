/*
 * A fake libnvidia-ml.so.1 for tests: the real pynvml ctypes bindings load it instead of the driver's.
 *
 * State lives in a text file named by $FAKE_NVML_STATE and is re-read on every call, so a test
 * changes the "hardware" by atomically rewriting the file (write a temporary file, then rename).
 * One directive per line; `#` starts a comment; values with spaces are double-quoted:
 *
 *   driver version=550.54.15 loaded=1
 *   gpu index=0 uuid=GPU-0000 name="NVIDIA H100" power_mw=300000 counter=1 energy_mj=12345
 *       live=0 t0=0 lost=0 perm=1 energy_rc=0 power_rc=0
 *
 * driver: loaded=0 makes init fail with NVML_ERROR_DRIVER_NOT_LOADED (and every later call too).
 * gpu:    energy_mj  the energy counter in millijoules;
 *         live=1     the counter also advances with CLOCK_REALTIME:
 *                    energy_mj + power_mw * (now - t0), with t0 in seconds since the epoch (mW*s = mJ);
 *         counter=0  nvmlDeviceGetTotalEnergyConsumption is NOT_SUPPORTED (pre-Volta: power only);
 *         lost=1     every call on the device returns NVML_ERROR_GPU_IS_LOST;
 *         perm=0     energy and power calls return NVML_ERROR_NO_PERMISSION;
 *         energy_rc, power_rc  force that NVML return code from the energy or power call (0: none).
 *
 * Build with -DFAKE_NVML_NO_ENERGY_FN for a library without nvmlDeviceGetTotalEnergyConsumption,
 * as with a driver too old to have it.
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
#define TEXT_LEN 96

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
};

struct fake_state {
    char driver_version[TEXT_LEN];
    int loaded;
    unsigned count;
    struct fake_gpu gpus[MAX_GPUS]; /* handles point into this array; they stay valid across re-reads */
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
    nvmlReturn_t rc = device_begin(device);
    return rc ? rc : copy_out(uuid, length, device->uuid);
}

static nvmlReturn_t do_name(nvmlDevice_t device, char *name, unsigned int length) {
    nvmlReturn_t rc = device_begin(device);
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
