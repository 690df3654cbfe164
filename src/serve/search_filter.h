/* search_filter.h — metadata filters as parameterised SQL (see index.h for the grammar). */
#ifndef MMT_SERVE_SEARCH_FILTER_H
#define MMT_SERVE_SEARCH_FILTER_H

#include <sqlite3.h>
#include <stdint.h>

#include "serve/index.h"

/* The rows (ascending, *rows mmt_malloc'd) of the items table in db whose metadata pass
 * every filter; `what` names the database in messages. */
mmt_status search_filter_rows(sqlite3 *db, const char *what, const mmt_search_filter *filters, int64_t n_filters,
                              int64_t **rows, int64_t *n_rows);

#endif
