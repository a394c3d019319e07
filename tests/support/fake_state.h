/*
 * What the fake vendor libraries (fake_nvml.c, fake_amd_smi.c) share: the state file they read,
 * parsed again only when it changed, and its `key=value` line syntax.
 *
 * The state file is named by an environment variable and read at the top of every call. Parsing it
 * each time is most of a fake's cost, so it is parsed only when its identity (st_dev, st_ino),
 * st_size, st_mtim or st_ctim differ from the file last parsed, or the variable names another path.
 * The Python writers replace the file atomically (a new inode each time) and make each version's
 * mtime later than the one it replaces, so no two versions look the same however fast they come.
 * Values that advance with time are computed at call time from the parsed fields, never cached.
 */
#ifndef FAKE_STATE_H
#define FAKE_STATE_H

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXPORT __attribute__((visibility("default")))

/* Copy `src` into `dst` of `size` bytes, cut short and always terminated. */
static inline void copy_text(char *dst, size_t size, const char *src) {
    strncpy(dst, src, size - 1);
    dst[size - 1] = '\0';
}

/* Next `key=value` token of a line; a value in double quotes may hold spaces. Returns 0 at the end. */
static inline int next_pair(char **cursor, char **key, char **value) {
    char *p = *cursor;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (*p == '\0' || *p == '#') return 0;
        *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p)) p++;
        if (*p == '=') break;
        if (*p) *p++ = '\0'; /* a bare word: skip it */
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

/* ---- Fields set by key: a table per struct, so each parser lists only its keys ------------------ */

enum field_kind { FIELD_INT, FIELD_UINT, FIELD_ULL, FIELD_DOUBLE, FIELD_TEXT };

struct field {
    const char *key;
    enum field_kind kind;
    size_t offset;
    size_t size; /* of a FIELD_TEXT buffer */
};

#define FIELD(type, key, member, kind) {(key), (kind), offsetof(type, member), sizeof(((type *)0)->member)}

/* Set the field of `obj` that `key` names from `value`; returns 0 when no field of `fields` has it. */
static inline int set_field(void *obj, const struct field *fields, size_t count, const char *key, const char *value) {
    for (size_t i = 0; i < count; i++) {
        char *at = (char *)obj + fields[i].offset;
        if (strcmp(fields[i].key, key)) continue;
        switch (fields[i].kind) {
        case FIELD_INT: *(int *)at = atoi(value); break;
        case FIELD_UINT: *(unsigned *)at = (unsigned)strtoul(value, NULL, 10); break;
        case FIELD_ULL: *(unsigned long long *)at = strtoull(value, NULL, 10); break;
        case FIELD_DOUBLE: *(double *)at = strtod(value, NULL); break;
        case FIELD_TEXT: copy_text(at, fields[i].size, value); break;
        }
        return 1;
    }
    return 0;
}

/* Set the fields of `obj` from the `key=value` pairs of `rest`: those in `fields`, the others through
 * `other` (NULL: ignored) for keys that are no plain field. */
static inline void set_fields(char *rest, void *obj, const struct field *fields, size_t count,
                              void (*other)(void *obj, const char *key, char *value)) {
    char *key, *value;
    while (next_pair(&rest, &key, &value))
        if (!set_field(obj, fields, count, key, value) && other) other(obj, key, value);
}

#define SET_FIELDS(rest, obj, fields, other) set_fields((rest), (obj), (fields), sizeof(fields) / sizeof((fields)[0]), (other))

/* A row of a fake's GPU_FIELDS, its table of struct fake_gpu. */
#define GPU_FIELD(key, member, kind) FIELD(struct fake_gpu, key, member, kind)

/* ---- The state file, parsed again only when it changed ------------------------------------------ */

struct state_file {
    int parsed; /* the fields below describe the file last parsed */
    char path[PATH_MAX];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
    struct timespec ctim;
};

static inline int same_time(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static inline int same_file(const struct state_file *sf, const char *path, const struct stat *st) {
    return sf->parsed && !strcmp(sf->path, path) && sf->dev == st->st_dev && sf->ino == st->st_ino &&
           sf->size == st->st_size && same_time(&sf->mtim, &st->st_mtim) && same_time(&sf->ctim, &st->st_ctim);
}

/* Parse the file that $`env_var` names unless it is the one last parsed: reset(1) then line(p) for
 * each line, leading blanks skipped; reset(0) alone when there is no file (no driver loaded). */
static inline void state_file_load(struct state_file *sf, const char *env_var, void (*reset)(int present),
                            void (*line)(char *p)) {
    const char *path = getenv(env_var);
    struct stat st;
    char text[1024];
    FILE *f;

    if (path && stat(path, &st) == 0 && same_file(sf, path, &st)) return;
    sf->parsed = 0;
    f = path ? fopen(path, "r") : NULL;
    reset(f != NULL);
    if (!f) return;
    while (fgets(text, sizeof text, f)) {
        char *p = text;
        while (isspace((unsigned char)*p)) p++;
        line(p);
    }
    /* The identity of the file read, not of the one stat() saw: it may have been replaced between. */
    if (fstat(fileno(f), &st) == 0 && strlen(path) < sizeof sf->path) {
        copy_text(sf->path, sizeof sf->path, path);
        sf->dev = st.st_dev;
        sf->ino = st.st_ino;
        sf->size = st.st_size;
        sf->mtim = st.st_mtim;
        sf->ctim = st.st_ctim;
        sf->parsed = 1;
    }
    fclose(f);
}

/* Does `line` start with directive `word` and a space? Then `*rest` is what follows. */
static inline int directive(char *line, const char *word, char **rest) {
    size_t n = strlen(word);
    if (strncmp(line, word, n) || line[n] != ' ') return 0;
    *rest = line + n + 1;
    return 1;
}

/* Every exported function holds g_lock; g_file is the state file last parsed. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct state_file g_file;

#endif
