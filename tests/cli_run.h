/*
 * cli_run.h — running the real mmtune binary (MMT_BINARY) from a test, as a user would, for
 * test_cli.c, test_train_cli.c and test_prompt_cli.c.
 *
 * cli_run_setup(dir) once: run() then sends stdout and stderr to files in dir and reads them
 * back into out_text and err_text (NULL where unreadable), which stay valid until the next
 * run(); cli_run_cleanup() frees them at the end. stdin is /dev/null. With
 * cli_print_failures set, a run that exits non-zero prints its command line and stderr, for
 * files whose runs are all expected to succeed. Header-only, like check.h.
 */
#ifndef MMT_TESTS_CLI_RUN_H
#define MMT_TESTS_CLI_RUN_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char out_path[320], err_path[320];
static char *out_text, *err_text;
static int cli_print_failures;

static inline void cli_run_setup(const char *dir) {
    snprintf(out_path, sizeof out_path, "%s/stdout", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
}

static inline void cli_run_cleanup(void) {
    free(out_text);
    free(err_text);
    out_text = err_text = NULL;
}

/* Runs `mmtune <printf(fmt, ...)>` through the shell; returns its exit code (-1: no exit). */
static inline __attribute__((format(printf, 1, 2))) int run(const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s </dev/null", MMT_BINARY, args, out_path, err_path);
    int status = system(cmd);
    cli_run_cleanup();
    out_text = check_read_file(out_path, NULL);
    err_text = check_read_file(err_path, NULL);
    if (cli_print_failures && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        fprintf(stderr, "%s\n%s", cmd, err_text ? err_text : "");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs printf(fmt, ...) through /bin/sh; returns its exit code (-1: no exit). */
static inline __attribute__((format(printf, 1, 2))) int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Starts `sh -c cmd` in the background, with the environment variable env_name=env_value
 * when env_name is not NULL; returns its pid (wait for it with waitpid). */
static inline pid_t spawn_sh(const char *cmd, const char *env_name, const char *env_value) {
    pid_t pid = fork();
    if (pid == 0) {
        if (env_name) setenv(env_name, env_value, 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Whether the path printf(fmt, ...) exists. */
static inline __attribute__((format(printf, 1, 2))) int exists(const char *fmt, ...) {
    char p[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    struct stat st;
    return stat(p, &st) == 0;
}

/* The whole file printf(fmt, a), malloc'd (NULL when unreadable); *len gets its size. */
static inline char *read_rel(const char *fmt, const char *a, size_t *len) {
    char p[1024];
    snprintf(p, sizeof p, fmt, a);
    return check_read_file(p, len);
}

static inline int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

#endif
