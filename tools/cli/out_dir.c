/*
 * out_dir.c — output folders of merge, init and bpe appear whole or not at all.
 *
 * The command writes into OUT.tmp-PID (core/dir.h) and publishes it onto OUT at the end; a
 * failure or a kill leaves OUT as it was (a later command clears the stale temporary). An
 * existing non-empty OUT is refused unless the command was given --overwrite, which then
 * replaces it as a whole.
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/crash.h"
#include "core/dir.h"

int cli_out_begin(const char *cmd, const char *out, int overwrite, char **tmp) {
    *tmp = NULL;
    if (!mmt_dir_is_empty(out, NULL) && !overwrite) {
        fprintf(stderr, "mmtune: error: %s: %s already exists and is not empty; pass --overwrite to replace it\n", cmd, out);
        return 1;
    }
    char *copy = mmt_strdup(out), *copy2 = mmt_strdup(out);
    if (copy && copy2) mmt_dir_clear_stale(dirname(copy), basename(copy2), 0);
    mmt_free(copy);
    mmt_free(copy2);
    if (mmt_dir_begin(out, tmp) != MMT_OK) return cli_runtime_error();
    return 0;
}

int cli_out_finish(char *tmp, const char *out, int rc) {
    if (!tmp) return rc;
    mmt_crash_point("out.before_publish");
    if (mmt_dir_finish(tmp, out, rc == 0 ? MMT_OK : MMT_STATUS_INTERNAL) != MMT_OK && rc == 0) rc = cli_runtime_error();
    mmt_free(tmp);
    return rc;
}
