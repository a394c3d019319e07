/*
 * A fake libamd_smi.so for tests: the real amdsmi Python bindings load it instead of ROCm's.
 *
 * Only the functions the amdsmi collector calls are defined here; fake_amd_smi_stubs.c defines
 * every other symbol the bindings bind at import, answering AMDSMI_STATUS_NOT_SUPPORTED.
 *
 * State lives in a text file named by $FAKE_AMDSMI_STATE, looked at on every call and parsed again
 * when it changed (fake_state.h), so a test changes the "hardware" by atomically rewriting the file. One directive per line; values with
 * spaces are double-quoted:
 *
 *   library loaded=1 t=1000.0
 *   gpu uuid=... name="AMD Instinct MI300X" bdf=0000:0c:00.0 partition=0 mode=SPX cus=304
 *       serial=A1B2 power_w=500 power_field=current counter=1 ticks=0 resolution=15.3
 *       wrap_bits=64 live=0 t0=0 lost=0 lost_rc=31 energy_rc=0 power_rc=0 processes_rc=0
 *       partition_rc=0 cap_uw=750000000 cap_rc=0
 *   proc gpu=0 pid=1234 vram=1048576 gfx_ns=5000000
 *
 * library: loaded=0 makes amdsmi_init fail with AMDSMI_STATUS_DRIVER_NOT_LOADED, and every later
 *          call too; t is the time in seconds that live counters advance to (the test's clock).
 * gpu:     one processor handle, in file order. The partitions of one physical GPU are several
 *          lines with the same bdf bus and device, each with its own partition id and function.
 *          ticks, resolution  the energy accumulator and its resolution in microjoules per tick;
 *          live=1     the accumulator also counts power_w since t0: ticks + power_w * 1e6 * (t - t0)
 *                     / resolution, with t from the library line;
 *          wrap_bits  the accumulator's width: its value is taken modulo 2^wrap_bits (below 64);
 *          counter=0  amdsmi_get_energy_count is NOT_SUPPORTED (power only);
 *          power_field  which field of amdsmi_power_info_t holds power_w: current (MI300 and newer)
 *                     or average (MI200 and older); the other reads N/A (0xFFFF);
 *          lost=1     every call on the handle but its BDF returns lost_rc (a GPU off the bus);
 *          energy_rc, power_rc, processes_rc, partition_rc, cap_rc  force that status from the
 *                     energy, power, process list, compute partition or power cap call (0: none);
 *          cap_uw     the power cap and the top of its range, in microwatts.
 * proc:    a process on the handle of gpu line `gpu` (0-based): VRAM in bytes, gfx engine time in ns.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>

#include "fake_state.h"

/* ---- amdsmi types and status codes (amdsmi_wrapper.py's ctypes definitions are the ABI) -------- */

typedef int amdsmi_status_t;
typedef void *amdsmi_handle;

enum {
    AMDSMI_STATUS_SUCCESS = 0,
    AMDSMI_STATUS_INVAL = 1,
    AMDSMI_STATUS_NOT_SUPPORTED = 2,
    AMDSMI_STATUS_INSUFFICIENT_SIZE = 41,
    AMDSMI_STATUS_NOT_FOUND = 31,
    AMDSMI_STATUS_NOT_INIT = 32,
    AMDSMI_STATUS_DRIVER_NOT_LOADED = 34,
};

#define NA16 0xFFFFu
#define PROCESSOR_TYPE_AMD_GPU 1u

typedef struct {
    char market_name[256];
    uint32_t vendor_id;
    char vendor_name[256];
    uint32_t subvendor_id;
    uint64_t device_id;
    uint32_t rev_id;
    char asic_serial[256];
    uint32_t oam_id;
    uint32_t num_of_compute_units;
    uint64_t target_graphics_version;
    uint32_t subsystem_id;
    uint32_t reserved[21];
} amdsmi_asic_info_t;

typedef struct {
    uint64_t kfd_id;
    uint32_t node_id;
    uint32_t current_partition_id;
    uint32_t reserved[12];
} amdsmi_kfd_info_t;

typedef struct {
    uint64_t socket_power;
    uint32_t current_socket_power;
    uint32_t average_socket_power;
    uint64_t gfx_voltage;
    uint64_t soc_voltage;
    uint64_t mem_voltage;
    uint32_t power_limit;
    uint64_t reserved[18];
} amdsmi_power_info_t;

typedef struct {
    uint64_t power_cap;
    uint64_t default_power_cap;
    uint64_t dpm_cap;
    uint64_t min_power_cap;
    uint64_t max_power_cap;
    uint64_t reserved[3];
} amdsmi_power_cap_info_t;

typedef struct {
    char name[256];
    uint32_t pid;
    uint64_t mem;
    struct {
        uint64_t gfx;
        uint64_t enc;
        uint32_t reserved[12];
    } engine_usage;
    struct {
        uint64_t gtt_mem;
        uint64_t cpu_mem;
        uint64_t vram_mem;
        uint32_t reserved[10];
    } memory_usage;
    char container_name[256];
    uint32_t cu_occupancy;
    uint32_t reserved[11];
} amdsmi_proc_info_t;

/* Sizes of the same structs under ctypes (amdsmi 7.0.2): a mismatch would corrupt memory quietly. */
_Static_assert(sizeof(amdsmi_asic_info_t) == 896, "amdsmi_asic_info_t");
_Static_assert(sizeof(amdsmi_kfd_info_t) == 64, "amdsmi_kfd_info_t");
_Static_assert(sizeof(amdsmi_power_info_t) == 192, "amdsmi_power_info_t");
_Static_assert(sizeof(amdsmi_power_cap_info_t) == 64, "amdsmi_power_cap_info_t");
_Static_assert(sizeof(amdsmi_proc_info_t) == 704, "amdsmi_proc_info_t");

/* ---- State ----------------------------------------------------------------------------------- */

#define MAX_GPUS 32
#define MAX_PROCS 64
#define TEXT_LEN 128

struct fake_gpu {
    char uuid[TEXT_LEN];
    char name[TEXT_LEN];
    char mode[16];
    char serial[TEXT_LEN];
    uint64_t bdf;
    unsigned partition;
    unsigned cus;
    unsigned long long power_w;
    int power_average;
    int counter;
    unsigned long long ticks;
    double resolution;
    unsigned wrap_bits;
    int live;
    double t0;
    int lost;
    int lost_rc;
    int energy_rc;
    int power_rc;
    int processes_rc;
    int partition_rc;
    unsigned long long cap_uw;
    int cap_rc;
};

struct fake_proc {
    unsigned gpu;
    unsigned pid;
    unsigned long long vram;
    unsigned long long gfx_ns;
};

struct fake_state {
    int loaded;
    double t;
    unsigned count;
    /* Handles point into this array, by position: they stay valid across re-reads. */
    struct fake_gpu gpus[MAX_GPUS];
    unsigned procs;
    struct fake_proc proc[MAX_PROCS];
};

static struct fake_state g_state;
static int g_initialised;
static int g_socket; /* the one socket handle points here */

static const struct fake_gpu GPU_DEFAULTS = {
    .mode = "SPX", .counter = 1, .resolution = 15.3, .wrap_bits = 64, .lost_rc = AMDSMI_STATUS_NOT_FOUND,
    .cap_uw = 750000000ULL,
};
static const struct field GPU_FIELDS[] = {
    GPU_FIELD("uuid", uuid, FIELD_TEXT),
    GPU_FIELD("name", name, FIELD_TEXT),
    GPU_FIELD("mode", mode, FIELD_TEXT),
    GPU_FIELD("serial", serial, FIELD_TEXT),
    GPU_FIELD("partition", partition, FIELD_UINT),
    GPU_FIELD("cus", cus, FIELD_UINT),
    GPU_FIELD("power_w", power_w, FIELD_ULL),
    GPU_FIELD("counter", counter, FIELD_INT),
    GPU_FIELD("ticks", ticks, FIELD_ULL),
    GPU_FIELD("resolution", resolution, FIELD_DOUBLE),
    GPU_FIELD("wrap_bits", wrap_bits, FIELD_UINT),
    GPU_FIELD("live", live, FIELD_INT),
    GPU_FIELD("t0", t0, FIELD_DOUBLE),
    GPU_FIELD("lost", lost, FIELD_INT),
    GPU_FIELD("lost_rc", lost_rc, FIELD_INT),
    GPU_FIELD("energy_rc", energy_rc, FIELD_INT),
    GPU_FIELD("power_rc", power_rc, FIELD_INT),
    GPU_FIELD("processes_rc", processes_rc, FIELD_INT),
    GPU_FIELD("partition_rc", partition_rc, FIELD_INT),
    GPU_FIELD("cap_uw", cap_uw, FIELD_ULL),
    GPU_FIELD("cap_rc", cap_rc, FIELD_INT),
};
static const struct field PROC_FIELDS[] = {
    FIELD(struct fake_proc, "gpu", gpu, FIELD_UINT),
    FIELD(struct fake_proc, "pid", pid, FIELD_UINT),
    FIELD(struct fake_proc, "vram", vram, FIELD_ULL),
    FIELD(struct fake_proc, "gfx_ns", gfx_ns, FIELD_ULL),
};
static const struct field LIBRARY_FIELDS[] = {
    FIELD(struct fake_state, "loaded", loaded, FIELD_INT),
    FIELD(struct fake_state, "t", t, FIELD_DOUBLE),
};

/* "dddd:bb:dd.f" as amdsmi_bdf_t's as_uint: function 3 bits, device 5, bus 8, domain 48. */
static uint64_t parse_bdf(const char *text) {
    unsigned long long domain = 0, bus = 0, device = 0, function = 0;
    if (sscanf(text, "%llx:%llx:%llx.%llx", &domain, &bus, &device, &function) != 4) return 0;
    return (function & 0x7) | (device & 0x1f) << 3 | (bus & 0xff) << 8 | domain << 16;
}

/* The gpu keys that are no plain field. */
static void gpu_key(void *record, const char *key, char *value) {
    struct fake_gpu *g = record;
    if (!strcmp(key, "bdf")) g->bdf = parse_bdf(value);
    else if (!strcmp(key, "power_field")) g->power_average = !strcmp(value, "average");
}

/* Empty state: no driver without a file, a loaded library with one. */
static void reset_state(int present) {
    memset(&g_state, 0, sizeof g_state);
    g_state.loaded = present;
}

static void parse_line(char *line) {
    char *rest;
    if (directive(line, "gpu", &rest) && g_state.count < MAX_GPUS) {
        g_state.gpus[g_state.count] = GPU_DEFAULTS;
        SET_FIELDS(rest, &g_state.gpus[g_state.count++], GPU_FIELDS, gpu_key);
    } else if (directive(line, "library", &rest)) {
        SET_FIELDS(rest, &g_state, LIBRARY_FIELDS, NULL);
    } else if (directive(line, "proc", &rest) && g_state.procs < MAX_PROCS) {
        memset(&g_state.proc[g_state.procs], 0, sizeof g_state.proc[0]);
        SET_FIELDS(rest, &g_state.proc[g_state.procs++], PROC_FIELDS, NULL);
    }
}

/* Bring g_state up to the state file (parsed again only when it changed); no file: no driver. */
static void load_state(void) {
    state_file_load(&g_file, "FAKE_AMDSMI_STATE", reset_state, parse_line);
}

/* The library state every call starts from: loaded and initialised. Call with g_lock held. */
static amdsmi_status_t library_begin(void) {
    load_state();
    if (!g_state.loaded) return AMDSMI_STATUS_DRIVER_NOT_LOADED;
    if (!g_initialised) return AMDSMI_STATUS_NOT_INIT;
    return AMDSMI_STATUS_SUCCESS;
}

/* The GPU behind a handle, or a status: lost GPUs answer lost_rc unless `any` (enumeration data). */
static amdsmi_status_t gpu_begin(amdsmi_handle handle, int any, struct fake_gpu **gpu) {
    amdsmi_status_t rc = library_begin();
    struct fake_gpu *g = (struct fake_gpu *)handle;
    if (rc != AMDSMI_STATUS_SUCCESS) return rc;
    if (g < g_state.gpus || g >= g_state.gpus + g_state.count) return AMDSMI_STATUS_INVAL;
    if (g->lost && !any) return g->lost_rc;
    *gpu = g;
    return AMDSMI_STATUS_SUCCESS;
}

#define GPU_CALL(handle, any, ...) /* the body may hold commas */     \
    do {                                                         \
        struct fake_gpu *g = NULL;                               \
        amdsmi_status_t rc_;                                     \
        pthread_mutex_lock(&g_lock);                             \
        rc_ = gpu_begin((handle), (any), &g);                    \
        if (rc_ == AMDSMI_STATUS_SUCCESS) {                      \
            __VA_ARGS__                                          \
        }                                                        \
        pthread_mutex_unlock(&g_lock);                           \
        return rc_;                                              \
    } while (0)

/* ---- Library ---------------------------------------------------------------------------------- */

EXPORT amdsmi_status_t amdsmi_init(uint64_t flags) {
    amdsmi_status_t rc = AMDSMI_STATUS_SUCCESS;
    (void)flags;
    pthread_mutex_lock(&g_lock);
    load_state();
    if (!g_state.loaded) rc = AMDSMI_STATUS_DRIVER_NOT_LOADED;
    else g_initialised = 1;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

EXPORT amdsmi_status_t amdsmi_shut_down(void) {
    pthread_mutex_lock(&g_lock);
    g_initialised = 0;
    pthread_mutex_unlock(&g_lock);
    return AMDSMI_STATUS_SUCCESS;
}

EXPORT amdsmi_status_t amdsmi_status_code_to_string(amdsmi_status_t status, const char **text) {
    switch (status) {
    case AMDSMI_STATUS_SUCCESS: *text = "Success"; break;
    case AMDSMI_STATUS_NOT_SUPPORTED: *text = "Feature not supported"; break;
    case AMDSMI_STATUS_NOT_FOUND: *text = "Device not found"; break;
    case AMDSMI_STATUS_DRIVER_NOT_LOADED: *text = "Driver not loaded"; break;
    default: *text = "An unknown error occurred"; break;
    }
    return AMDSMI_STATUS_SUCCESS;
}

/* The one socket, holding every GPU. */
EXPORT amdsmi_status_t amdsmi_get_socket_handles(uint32_t *count, amdsmi_handle *sockets) {
    amdsmi_status_t rc;
    pthread_mutex_lock(&g_lock);
    rc = library_begin();
    if (rc == AMDSMI_STATUS_SUCCESS) {
        if (sockets != NULL && *count >= 1) sockets[0] = &g_socket;
        *count = 1;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

EXPORT amdsmi_status_t amdsmi_get_processor_handles(amdsmi_handle socket, uint32_t *count,
                                                    amdsmi_handle *handles) {
    amdsmi_status_t rc;
    pthread_mutex_lock(&g_lock);
    rc = library_begin();
    if (rc == AMDSMI_STATUS_SUCCESS && socket != &g_socket) rc = AMDSMI_STATUS_INVAL;
    if (rc == AMDSMI_STATUS_SUCCESS) {
        if (handles != NULL) {
            for (unsigned i = 0; i < g_state.count && i < *count; i++) handles[i] = &g_state.gpus[i];
        }
        *count = g_state.count;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* ---- Identity --------------------------------------------------------------------------------- */

EXPORT amdsmi_status_t amdsmi_get_processor_type(amdsmi_handle handle, uint32_t *type) {
    GPU_CALL(handle, 1, { *type = PROCESSOR_TYPE_AMD_GPU; });
}

EXPORT amdsmi_status_t amdsmi_get_gpu_device_bdf(amdsmi_handle handle, uint64_t *bdf) {
    GPU_CALL(handle, 1, { *bdf = g->bdf; });
}

EXPORT amdsmi_status_t amdsmi_get_gpu_device_uuid(amdsmi_handle handle, uint32_t *length, char *uuid) {
    GPU_CALL(handle, 0, {
        if (*length <= strlen(g->uuid)) {
            rc_ = AMDSMI_STATUS_INSUFFICIENT_SIZE;
        } else {
            copy_text(uuid, *length, g->uuid);
            *length = (uint32_t)strlen(g->uuid);
        }
    });
}

EXPORT amdsmi_status_t amdsmi_get_gpu_asic_info(amdsmi_handle handle, amdsmi_asic_info_t *info) {
    GPU_CALL(handle, 0, {
        memset(info, 0, sizeof *info);
        copy_text(info->market_name, sizeof info->market_name, g->name);
        info->vendor_id = 0x1002;
        copy_text(info->vendor_name, sizeof info->vendor_name, "Advanced Micro Devices Inc. [AMD/ATI]");
        info->device_id = 0x74a1;
        copy_text(info->asic_serial, sizeof info->asic_serial, g->serial);
        info->oam_id = 0xFFFFFFFFu;
        info->num_of_compute_units = g->cus ? g->cus : 0xFFFFFFFFu;
        info->target_graphics_version = 0x942;
    });
}

EXPORT amdsmi_status_t amdsmi_get_gpu_kfd_info(amdsmi_handle handle, amdsmi_kfd_info_t *info) {
    GPU_CALL(handle, 0, {
        memset(info, 0, sizeof *info);
        info->kfd_id = 1000 + (uint64_t)(g - g_state.gpus);
        info->node_id = (uint32_t)(g - g_state.gpus) + 1;
        info->current_partition_id = g->partition;
    });
}

EXPORT amdsmi_status_t amdsmi_get_gpu_compute_partition(amdsmi_handle handle, char *partition,
                                                        uint32_t length) {
    GPU_CALL(handle, 0, {
        if (g->partition_rc) rc_ = g->partition_rc;
        else if (length <= strlen(g->mode)) rc_ = AMDSMI_STATUS_INSUFFICIENT_SIZE;
        else copy_text(partition, length, g->mode);
    });
}

/* ---- Energy and power ------------------------------------------------------------------------- */

static unsigned long long ticks_now(const struct fake_gpu *g) {
    unsigned long long ticks = g->ticks;
    if (g->live && g_state.t > g->t0 && g->resolution > 0) {
        double energy_uj = (double)g->power_w * 1e6 * (g_state.t - g->t0);
        ticks += (unsigned long long)(energy_uj / g->resolution);
    }
    if (g->wrap_bits > 0 && g->wrap_bits < 64) ticks &= (1ULL << g->wrap_bits) - 1;
    return ticks;
}

EXPORT amdsmi_status_t amdsmi_get_energy_count(amdsmi_handle handle, uint64_t *energy, float *resolution,
                                               uint64_t *timestamp) {
    GPU_CALL(handle, 0, {
        if (g->energy_rc) rc_ = g->energy_rc;
        else if (!g->counter) rc_ = AMDSMI_STATUS_NOT_SUPPORTED;
        else {
            *energy = ticks_now(g);
            *resolution = (float)g->resolution;
            *timestamp = (uint64_t)(g_state.t * 1e9);
        }
    });
}

EXPORT amdsmi_status_t amdsmi_get_power_info(amdsmi_handle handle, amdsmi_power_info_t *info) {
    GPU_CALL(handle, 0, {
        if (g->power_rc) {
            rc_ = g->power_rc;
        } else {
            memset(info, 0, sizeof *info);
            info->socket_power = NA16;
            info->current_socket_power = g->power_average ? NA16 : (uint32_t)g->power_w;
            info->average_socket_power = g->power_average ? (uint32_t)g->power_w : NA16;
            info->gfx_voltage = info->soc_voltage = info->mem_voltage = NA16;
            info->power_limit = (uint32_t)(g->cap_uw / 1000000);
        }
    });
}

EXPORT amdsmi_status_t amdsmi_get_power_cap_info(amdsmi_handle handle, uint32_t sensor,
                                                 amdsmi_power_cap_info_t *info) {
    (void)sensor;
    GPU_CALL(handle, 0, {
        if (g->cap_rc) {
            rc_ = g->cap_rc;
        } else {
            memset(info, 0, sizeof *info);
            info->power_cap = info->default_power_cap = info->max_power_cap = g->cap_uw;
            info->min_power_cap = g->cap_uw / 4;
        }
    });
}

/* ---- Processes -------------------------------------------------------------------------------- */

EXPORT amdsmi_status_t amdsmi_get_gpu_process_list(amdsmi_handle handle, uint32_t *max_processes,
                                                   amdsmi_proc_info_t *list) {
    GPU_CALL(handle, 0, {
        unsigned position = (unsigned)(g - g_state.gpus), found = 0;
        if (g->processes_rc) {
            rc_ = g->processes_rc;
        } else {
            for (unsigned i = 0; i < g_state.procs; i++) {
                const struct fake_proc *p = &g_state.proc[i];
                if (p->gpu != position) continue;
                if (list != NULL && found < *max_processes) {
                    amdsmi_proc_info_t *info = &list[found];
                    memset(info, 0, sizeof *info);
                    snprintf(info->name, sizeof info->name, "proc%u", p->pid);
                    info->pid = p->pid;
                    info->mem = p->vram;
                    info->engine_usage.gfx = p->gfx_ns;
                    info->memory_usage.vram_mem = p->vram;
                    info->cu_occupancy = 0xFFFFFFFFu;
                }
                found++;
            }
            if (list != NULL && found > *max_processes) rc_ = AMDSMI_STATUS_INSUFFICIENT_SIZE;
            *max_processes = found;
        }
    });
}
