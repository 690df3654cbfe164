/* target_regex.c — Python-`re`-compatible yes/no matching for PEFT module-name patterns.
 *
 * Pattern -> syntax tree (recursive descent following CPython's sre_parse.py, so errors and
 * the literal-`{` rules agree) -> a Thompson NFA program -> simulated with a set of states
 * per input byte (Pike's VM without captures). Yes/no answers do not depend on greediness,
 * so lazy quantifiers compile like greedy ones.
 */
#include "peft/target_regex.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define MAX_PATTERN_BYTES 4096 /* also bounds the recursion depth of compile() */
#define MAX_PROGRAM 20000      /* instructions, after expanding {m,n} */
#define MAX_GROUP_DEPTH 200

enum node_type { N_EMPTY, N_CHAR, N_SET, N_ANY, N_BOL, N_EOL, N_EOS, N_CAT, N_ALT, N_REPEAT };

typedef struct node {
    int type;
    int a, b;       /* children (CAT, ALT: both; REPEAT: a) */
    int min, max;   /* REPEAT; max -1 = unbounded */
    int value;      /* CHAR: the byte; SET: index into sets */
} node;

typedef struct charset {
    uint8_t bits[32];
} charset;

enum op { I_CHAR, I_SET, I_ANY, I_SPLIT, I_JMP, I_BOL, I_EOL, I_EOS, I_MATCH };

typedef struct inst {
    int op;
    int x, y; /* CHAR: byte; SET: set index; SPLIT: two targets; JMP: target */
} inst;

typedef struct thread_list {
    int *pcs; /* owned */
    int n;
    int matched;
} thread_list;

struct mmt_regex {
    inst *prog; /* owned */
    int n_prog;
    charset *sets; /* owned */
    /* scratch for matching (owned) */
    thread_list lists[2];
    uint32_t *mark;
    uint32_t generation;
    int *stack;
};

typedef struct parser {
    const char *pattern, *what;
    size_t pos, len;
    node *nodes; /* owned until compile */
    int n_nodes, cap_nodes;
    charset *sets;
    int n_sets, cap_sets;
    int depth;
    mmt_status status; /* first error; later steps stop */
} parser;

/* ---------------------------------------------------------------------------------- */
/* Errors                                                                             */

static int syntax_error(parser *p, size_t at, const char *msg) {
    if (p->status == MMT_OK)
        p->status = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: regex \"%s\": %s at position %zu",
                             p->what, p->pattern, msg, at);
    return -1;
}

static int unsupported(parser *p, size_t at, const char *construct) {
    if (p->status == MMT_OK)
        p->status = mmt_fail(MMT_STATUS_UNSUPPORTED,
                             "%s: regex \"%s\": %s (position %zu) is not supported by mmtune's "
                             "matcher; write the pattern without it",
                             p->what, p->pattern, construct, at);
    return -1;
}

/* ---------------------------------------------------------------------------------- */
/* Syntax tree                                                                        */

static int new_node(parser *p, int type) {
    if (p->status != MMT_OK) return -1;
    if (p->n_nodes == p->cap_nodes) {
        int cap = p->cap_nodes ? p->cap_nodes * 2 : 64;
        node *nodes = mmt_realloc(p->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            p->status = MMT_STATUS_OUT_OF_MEMORY;
            return -1;
        }
        p->nodes = nodes;
        p->cap_nodes = cap;
    }
    node *n = &p->nodes[p->n_nodes];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->a = n->b = -1;
    return p->n_nodes++;
}

static int new_pair(parser *p, int type, int a, int b) {
    int i = new_node(p, type);
    if (i >= 0) {
        p->nodes[i].a = a;
        p->nodes[i].b = b;
    }
    return i;
}

static int new_char(parser *p, int c) {
    int i = new_node(p, N_CHAR);
    if (i >= 0) p->nodes[i].value = c;
    return i;
}

/* A fresh, empty set; returns its index or -1. */
static int new_set(parser *p) {
    if (p->status != MMT_OK) return -1;
    if (p->n_sets == p->cap_sets) {
        int cap = p->cap_sets ? p->cap_sets * 2 : 8;
        charset *sets = mmt_realloc(p->sets, (size_t)cap * sizeof *sets);
        if (!sets) {
            p->status = MMT_STATUS_OUT_OF_MEMORY;
            return -1;
        }
        p->sets = sets;
        p->cap_sets = cap;
    }
    memset(&p->sets[p->n_sets], 0, sizeof(charset));
    return p->n_sets++;
}

static void set_add(charset *s, int c) { s->bits[c >> 3] |= (uint8_t)(1u << (c & 7)); }
static int set_has(const charset *s, int c) { return (s->bits[c >> 3] >> (c & 7)) & 1; }

static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_word(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
}
static int is_space(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* \d \D \w \W \s \S into s; 0 if c is not a category letter. */
static int add_category(charset *s, int c) {
    int (*test)(int);
    switch (c | 0x20) {
    case 'd': test = is_digit; break;
    case 'w': test = is_word; break;
    case 's': test = is_space; break;
    default: return 0;
    }
    int negate = c >= 'A' && c <= 'Z';
    for (int b = 0; b < 256; b++)
        if (b < 128 ? (test(b) != 0) != negate : negate) set_add(s, b);
    return 1;
}

static int hex_value(int c) {
    if (is_digit(c)) return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
}

/* A single-character escape shared by both contexts (t n r f v a x and punctuation);
 * p->pos is just past the backslash. Returns the byte, or -1 with an error set. */
static int simple_escape(parser *p, size_t start, int c) {
    switch (c) {
    case 't': return '\t';
    case 'n': return '\n';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'a': return '\a';
    case 'x': {
        int hi = p->pos < p->len ? hex_value((unsigned char)p->pattern[p->pos]) : -1;
        int lo = p->pos + 1 < p->len ? hex_value((unsigned char)p->pattern[p->pos + 1]) : -1;
        if (hi < 0 || lo < 0) return syntax_error(p, start, "incomplete escape \\x");
        p->pos += 2;
        if (hi >= 8) return unsupported(p, start, "a non-ASCII \\x escape");
        return hi * 16 + lo;
    }
    case 'u': case 'U': case 'N': return unsupported(p, start, "a \\u, \\U or \\N escape");
    default: break;
    }
    if (is_digit(c)) return unsupported(p, start, "a backreference or octal escape");
    if (is_alpha(c)) {
        char msg[32];
        snprintf(msg, sizeof msg, "bad escape \\%c", c);
        return syntax_error(p, start, msg);
    }
    if (c >= 128) return unsupported(p, start, "a non-ASCII character");
    return c;
}

/* Python's `{m,n}` syntax at p->pos (just after `{`). Returns 1 and fills min/max and *end
 * when it is a quantifier, 0 when Python would read the `{` literally. */
static int brace_quantifier(parser *p, int *min, int *max, size_t *end) {
    size_t i = p->pos;
    const char *s = p->pattern;
    if (i < p->len && s[i] == '}') return 0;
    long lo = -1, hi = -1;
    while (i < p->len && is_digit(s[i])) {
        lo = (lo < 0 ? 0 : lo) * 10 + (s[i] - '0');
        if (lo > 1000000) lo = 1000000;
        i++;
    }
    if (i < p->len && s[i] == ',') {
        i++;
        while (i < p->len && is_digit(s[i])) {
            hi = (hi < 0 ? 0 : hi) * 10 + (s[i] - '0');
            if (hi > 1000000) hi = 1000000;
            i++;
        }
    } else {
        hi = lo;
    }
    if (i >= p->len || s[i] != '}') return 0;
    *min = lo < 0 ? 0 : (int)lo;
    *max = hi < 0 ? -1 : (int)hi;
    *end = i + 1;
    return 1;
}

static int parse_alternation(parser *p);

static int parse_class(parser *p) {
    size_t start = p->pos - 1; /* the `[` */
    int set = new_set(p);
    if (set < 0) return -1;
    int negate = 0;
    if (p->pos < p->len && p->pattern[p->pos] == '^') {
        negate = 1;
        p->pos++;
    }
    size_t first = p->pos;
    for (;;) {
        if (p->pos >= p->len) return syntax_error(p, start, "unterminated character set");
        size_t at = p->pos;
        int c = (unsigned char)p->pattern[p->pos++];
        if (c == ']' && at != first) break;
        int lo; /* -1: a category, which cannot start a range */
        if (c == '\\') {
            if (p->pos >= p->len) return syntax_error(p, at, "bad escape (end of pattern)");
            int e = (unsigned char)p->pattern[p->pos++];
            if (add_category(&p->sets[set], e)) lo = -1;
            else if (e == 'b') lo = '\b';
            else if ((lo = simple_escape(p, at, e)) < 0) return -1;
        } else if (c >= 128) {
            return unsupported(p, at, "a non-ASCII character");
        } else {
            lo = c;
        }
        if (p->pos < p->len && p->pattern[p->pos] == '-') {
            p->pos++;
            if (p->pos >= p->len) return syntax_error(p, start, "unterminated character set");
            size_t at2 = p->pos;
            int c2 = (unsigned char)p->pattern[p->pos++];
            if (c2 == ']') { /* "[a-]": the dash is literal and the class ends */
                if (lo >= 0) set_add(&p->sets[set], lo);
                set_add(&p->sets[set], '-');
                break;
            }
            int hi;
            if (c2 == '\\') {
                if (p->pos >= p->len) return syntax_error(p, at2, "bad escape (end of pattern)");
                int e = (unsigned char)p->pattern[p->pos++];
                charset scratch;
                memset(&scratch, 0, sizeof scratch);
                if (add_category(&scratch, e)) hi = -1;
                else if (e == 'b') hi = '\b';
                else if ((hi = simple_escape(p, at2, e)) < 0) return -1;
            } else if (c2 >= 128) {
                return unsupported(p, at2, "a non-ASCII character");
            } else {
                hi = c2;
            }
            if (lo < 0 || hi < 0 || hi < lo) return syntax_error(p, at, "bad character range");
            for (int b = lo; b <= hi; b++) set_add(&p->sets[set], b);
        } else if (lo >= 0) {
            set_add(&p->sets[set], lo);
        }
    }
    if (negate)
        for (int i = 0; i < 32; i++) p->sets[set].bits[i] = (uint8_t)~p->sets[set].bits[i];
    int n = new_node(p, N_SET);
    if (n >= 0) p->nodes[n].value = set;
    return n;
}

/* `(` has been read. */
static int parse_group(parser *p) {
    size_t start = p->pos - 1;
    if (p->pos < p->len && p->pattern[p->pos] == '?') {
        p->pos++;
        char c = p->pos < p->len ? p->pattern[p->pos] : '\0';
        if (c == ':') {
            p->pos++;
        } else if (c == 'P' && p->pos + 1 < p->len && p->pattern[p->pos + 1] == '<') {
            p->pos += 2;
            size_t name = p->pos;
            while (p->pos < p->len && is_word(p->pattern[p->pos])) p->pos++;
            if (p->pos == name || is_digit(p->pattern[name]) || p->pos >= p->len ||
                p->pattern[p->pos] != '>')
                return syntax_error(p, name, "bad character in group name");
            p->pos++;
        } else if (c == 'P' && p->pos + 1 < p->len && p->pattern[p->pos + 1] == '=') {
            return unsupported(p, start, "a named backreference (?P=...)");
        } else if (c == '#') {
            while (p->pos < p->len && p->pattern[p->pos] != ')') p->pos++;
            if (p->pos >= p->len) return syntax_error(p, start, "missing ), unterminated comment");
            p->pos++;
            return new_node(p, N_EMPTY);
        } else if (c == '=' || c == '!' || c == '<') {
            return unsupported(p, start, "a lookahead/lookbehind group");
        } else if (c == '>') {
            return unsupported(p, start, "an atomic group (?>...)");
        } else if (c == '(') {
            return unsupported(p, start, "a conditional group");
        } else if (is_alpha(c) || c == '-') {
            return unsupported(p, start, "an inline flag group such as (?i)");
        } else {
            return syntax_error(p, start, "unknown extension");
        }
    }
    if (++p->depth > MAX_GROUP_DEPTH) return unsupported(p, start, "groups nested this deep");
    int inner = parse_alternation(p);
    p->depth--;
    if (inner < 0) return -1;
    if (p->pos >= p->len || p->pattern[p->pos] != ')')
        return syntax_error(p, start, "missing ), unterminated subpattern");
    p->pos++;
    return inner;
}

/* One atom; *anchor tells whether it is an assertion (which cannot be repeated). */
static int parse_atom(parser *p, int *anchor) {
    size_t at = p->pos;
    int c = (unsigned char)p->pattern[p->pos++];
    *anchor = 0;
    switch (c) {
    case '(': return parse_group(p);
    case '[': return parse_class(p);
    case '.': return new_node(p, N_ANY);
    case '^': *anchor = 1; return new_node(p, N_BOL);
    case '$': *anchor = 1; return new_node(p, N_EOL);
    case '*': case '+': case '?': return syntax_error(p, at, "nothing to repeat");
    case '{': {
        int min, max;
        size_t end;
        if (brace_quantifier(p, &min, &max, &end)) return syntax_error(p, at, "nothing to repeat");
        return new_char(p, '{');
    }
    case '\\': {
        if (p->pos >= p->len) return syntax_error(p, at, "bad escape (end of pattern)");
        int e = (unsigned char)p->pattern[p->pos++];
        if (e == 'A') { *anchor = 1; return new_node(p, N_BOL); }
        if (e == 'Z') { *anchor = 1; return new_node(p, N_EOS); }
        if (e == 'b' || e == 'B') return unsupported(p, at, "a word boundary \\b or \\B");
        int set = -1;
        charset probe;
        memset(&probe, 0, sizeof probe);
        if (add_category(&probe, e)) {
            if ((set = new_set(p)) < 0) return -1;
            p->sets[set] = probe;
            int n = new_node(p, N_SET);
            if (n >= 0) p->nodes[n].value = set;
            return n;
        }
        int b = simple_escape(p, at, e);
        return b < 0 ? -1 : new_char(p, b);
    }
    default:
        if (c >= 128) return unsupported(p, at, "a non-ASCII character");
        return new_char(p, c);
    }
}

/* An atom and any quantifiers after it (one, plus an optional lazy `?`: Python calls a
 * second one "multiple repeat"). */
static int parse_repeat(parser *p) {
    int anchor, quantified = 0;
    int item = parse_atom(p, &anchor);
    if (item < 0) return -1;
    while (p->pos < p->len) {
        size_t at = p->pos;
        char c = p->pattern[p->pos];
        int min, max;
        size_t end = at + 1;
        if (c == '*') min = 0, max = -1;
        else if (c == '+') min = 1, max = -1;
        else if (c == '?') min = 0, max = 1;
        else if (c != '{' || !(p->pos++, brace_quantifier(p, &min, &max, &end))) {
            p->pos = at;
            break;
        }
        if (anchor) return syntax_error(p, at, "nothing to repeat");
        if (quantified) return syntax_error(p, at, "multiple repeat");
        if (max >= 0 && max < min) return syntax_error(p, at + 1, "min repeat greater than max repeat");
        p->pos = end;
        if (p->pos < p->len && p->pattern[p->pos] == '?') p->pos++; /* lazy: same yes/no */
        else if (p->pos < p->len && p->pattern[p->pos] == '+')
            return unsupported(p, p->pos, "a possessive quantifier");
        int r = new_node(p, N_REPEAT);
        if (r < 0) return -1;
        p->nodes[r].a = item;
        p->nodes[r].min = min;
        p->nodes[r].max = max;
        quantified = 1;
        item = r;
    }
    return item;
}

static int parse_concat(parser *p) {
    int result = -1;
    while (p->pos < p->len && p->pattern[p->pos] != '|' && p->pattern[p->pos] != ')') {
        int item = parse_repeat(p);
        if (item < 0) return -1;
        result = result < 0 ? item : new_pair(p, N_CAT, result, item);
        if (result < 0) return -1;
    }
    return result < 0 ? new_node(p, N_EMPTY) : result;
}

static int parse_alternation(parser *p) {
    int left = parse_concat(p);
    while (left >= 0 && p->pos < p->len && p->pattern[p->pos] == '|') {
        p->pos++;
        int right = parse_concat(p);
        if (right < 0) return -1;
        left = new_pair(p, N_ALT, left, right);
    }
    return left;
}

/* ---------------------------------------------------------------------------------- */
/* Compilation to an NFA program                                                      */

typedef struct compiler {
    const parser *p;
    inst *prog;
    int n, cap;
    int too_big;
} compiler;

static int emit(compiler *c, int op, int x, int y) {
    if (c->n >= MAX_PROGRAM) {
        c->too_big = 1;
        return -1;
    }
    c->prog[c->n] = (inst){op, x, y};
    return c->n++;
}

static void compile_node(compiler *c, int i) {
    if (c->too_big) return;
    const node *n = &c->p->nodes[i];
    switch (n->type) {
    case N_EMPTY: return;
    case N_CHAR: emit(c, I_CHAR, n->value, 0); return;
    case N_SET: emit(c, I_SET, n->value, 0); return;
    case N_ANY: emit(c, I_ANY, 0, 0); return;
    case N_BOL: emit(c, I_BOL, 0, 0); return;
    case N_EOL: emit(c, I_EOL, 0, 0); return;
    case N_EOS: emit(c, I_EOS, 0, 0); return;
    case N_CAT:
        compile_node(c, n->a);
        compile_node(c, n->b);
        return;
    case N_ALT: {
        int split = emit(c, I_SPLIT, 0, 0);
        if (split < 0) return;
        c->prog[split].x = c->n;
        compile_node(c, n->a);
        int jmp = emit(c, I_JMP, 0, 0);
        if (jmp < 0) return;
        c->prog[split].y = c->n;
        compile_node(c, n->b);
        c->prog[jmp].x = c->n;
        return;
    }
    case N_REPEAT: {
        for (int k = 0; k < n->min && !c->too_big; k++) compile_node(c, n->a);
        if (n->max < 0) {
            int split = emit(c, I_SPLIT, 0, 0);
            if (split < 0) return;
            c->prog[split].x = c->n;
            compile_node(c, n->a);
            emit(c, I_JMP, split, 0);
            if (!c->too_big) c->prog[split].y = c->n;
            return;
        }
        /* optional copies: each SPLIT either goes on or jumps to the common end */
        int first = c->n;
        for (int k = n->min; k < n->max && !c->too_big; k++) {
            int split = emit(c, I_SPLIT, 0, -1);
            if (split < 0) return;
            c->prog[split].x = c->n;
            compile_node(c, n->a);
        }
        if (c->too_big) return;
        for (int k = first; k < c->n; k++)
            if (c->prog[k].op == I_SPLIT && c->prog[k].y == -1) c->prog[k].y = c->n;
        return;
    }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Public API                                                                         */

void mmt_regex_free(mmt_regex *re) {
    if (!re) return;
    mmt_free(re->prog);
    mmt_free(re->sets);
    mmt_free(re->lists[0].pcs);
    mmt_free(re->lists[1].pcs);
    mmt_free(re->mark);
    mmt_free(re->stack);
    mmt_free(re);
}

mmt_status mmt_regex_compile(const char *pattern, const char *what, mmt_regex **out) {
    *out = NULL;
    size_t len = strlen(pattern);
    if (len > MAX_PATTERN_BYTES)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: regex of %zu bytes is longer than the %d mmtune accepts",
                        what, len, MAX_PATTERN_BYTES);
    parser p = {.pattern = pattern, .what = what, .len = len, .status = MMT_OK};
    int root = parse_alternation(&p);
    if (p.status == MMT_OK && p.pos < p.len) syntax_error(&p, p.pos, "unbalanced parenthesis");
    mmt_regex *re = NULL;
    compiler c = {.p = &p};
    if (p.status != MMT_OK || root < 0) goto done;
    re = mmt_calloc(1, sizeof *re);
    c.cap = MAX_PROGRAM;
    c.prog = mmt_malloc(sizeof(inst) * MAX_PROGRAM);
    if (!re || !c.prog) {
        p.status = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    compile_node(&c, root);
    emit(&c, I_MATCH, 0, 0);
    if (c.too_big) {
        p.status = mmt_fail(MMT_STATUS_UNSUPPORTED,
                            "%s: regex \"%s\" expands to more than %d NFA states (large {m,n} counts?)",
                            what, pattern, MAX_PROGRAM);
        goto done;
    }
    re->n_prog = c.n;
    re->prog = mmt_realloc(c.prog, sizeof(inst) * (size_t)c.n);
    if (!re->prog) {
        p.status = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    c.prog = NULL;
    re->sets = p.sets;
    p.sets = NULL;
    re->lists[0].pcs = mmt_malloc(sizeof(int) * (size_t)re->n_prog);
    re->lists[1].pcs = mmt_malloc(sizeof(int) * (size_t)re->n_prog);
    re->mark = mmt_calloc((size_t)re->n_prog, sizeof(uint32_t));
    re->stack = mmt_malloc(sizeof(int) * (size_t)(2 * re->n_prog + 2));
    if (!re->lists[0].pcs || !re->lists[1].pcs || !re->mark || !re->stack)
        p.status = MMT_STATUS_OUT_OF_MEMORY;
done:
    mmt_free(c.prog);
    mmt_free(p.nodes);
    mmt_free(p.sets);
    if (p.status != MMT_OK) {
        mmt_regex_free(re);
        return p.status;
    }
    *out = re;
    return MMT_OK;
}

static void next_generation(mmt_regex *re) {
    if (++re->generation == 0) { /* wrapped: forget every old mark */
        memset(re->mark, 0, sizeof(uint32_t) * (size_t)re->n_prog);
        re->generation = 1;
    }
}

/* Adds pc and everything reachable from it without consuming input, at position pos. */
static void add_thread(mmt_regex *re, thread_list *list, int pc, const char *s, size_t pos,
                       size_t len) {
    int top = 0;
    re->stack[top++] = pc;
    while (top > 0) {
        int i = re->stack[--top];
        if (re->mark[i] == re->generation) continue;
        re->mark[i] = re->generation;
        const inst *in = &re->prog[i];
        switch (in->op) {
        case I_JMP: re->stack[top++] = in->x; break;
        case I_SPLIT:
            re->stack[top++] = in->y;
            re->stack[top++] = in->x;
            break;
        case I_BOL:
            if (pos == 0) re->stack[top++] = i + 1;
            break;
        case I_EOL: /* Python's $: at the end, or before a final newline */
            if (pos == len || (pos + 1 == len && s[pos] == '\n')) re->stack[top++] = i + 1;
            break;
        case I_EOS:
            if (pos == len) re->stack[top++] = i + 1;
            break;
        case I_MATCH:
            list->matched = 1;
            break;
        default:
            list->pcs[list->n++] = i;
            break;
        }
    }
}

static int run(mmt_regex *re, const char *s, int full) {
    size_t len = strlen(s);
    thread_list *cur = &re->lists[0], *next = &re->lists[1];
    cur->n = cur->matched = 0;
    next_generation(re);
    add_thread(re, cur, 0, s, 0, len);
    for (size_t pos = 0;; pos++) {
        if (cur->matched && (!full || pos == len)) return 1;
        if (pos == len || cur->n == 0) return 0;
        int c = (unsigned char)s[pos];
        next->n = next->matched = 0;
        next_generation(re);
        for (int t = 0; t < cur->n; t++) {
            const inst *in = &re->prog[cur->pcs[t]];
            int ok = 0;
            switch (in->op) {
            case I_CHAR: ok = c == in->x; break;
            case I_SET: ok = set_has(&re->sets[in->x], c); break;
            case I_ANY: ok = c != '\n'; break;
            default: break;
            }
            if (ok) add_thread(re, next, cur->pcs[t] + 1, s, pos + 1, len);
        }
        thread_list *swap = cur;
        cur = next;
        next = swap;
    }
}

int mmt_regex_fullmatch(mmt_regex *re, const char *s) { return run(re, s, 1); }
int mmt_regex_match(mmt_regex *re, const char *s) { return run(re, s, 0); }
