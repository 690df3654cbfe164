/*
 * tokenizer_json.c — the shared half of reading tokenizer.json (tokenizer_json.h).
 *
 * The format is whatever the `tokenizers` crate's serde derives write (the .rs files under
 * tokenizers/src/: normalizers, pre_tokenizers, processors, decoders, models); field
 * defaults below are that crate's. Every refusal names the file, the component and the value, on one line.
 */
#include "data/tokenizer_json.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* The regex of CLIP's Split pre-tokenizer, as tokenization_clip.py writes it. */
static const char CLIP_SPLIT_REGEX[] =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|"
    "[^\\s\\p{L}\\p{N}]+";

const char *mmt_tokenizer_json_shown(const char *s, size_t n, char out[44]) {
    size_t k = n < 40 ? n : 40;
    for (size_t i = 0; i < k; i++) out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    memcpy(out + k, n > k ? "..." : "", n > k ? 4 : 1);
    return out;
}

mmt_status mmt_tokenizer_json_check_root(const mmt_json *root, const char *what) {
    if (root->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a tokenizer.json object, got %s", what,
                        mmt_json_type_name(root->type));
    const mmt_json *model = mmt_json_get(root, "model");
    if (!model || model->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model: expected an object, got %s", what,
                        model ? mmt_json_type_name(model->type) : "nothing");
    return MMT_OK;
}

mmt_status mmt_tokenizer_json_open(const char *path, mmt_json_doc **doc) {
    *doc = NULL;
    MMT_TRY(mmt_json_parse_file(path, doc));
    mmt_status s = mmt_tokenizer_json_check_root(mmt_json_root(*doc), path);
    if (s != MMT_OK) {
        mmt_json_free(*doc);
        *doc = NULL;
    }
    return s;
}

/* An object with a string "type"; `where` is its dotted path for messages. */
static mmt_status typed_object(const mmt_json *v, const char *what, const char *where,
                               const char **type) {
    if (v->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected an object, got %s", what, where,
                        mmt_json_type_name(v->type));
    const mmt_json *t = mmt_json_get(v, "type");
    if (!t || t->type != MMT_JSON_STRING)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected a string \"type\", got %s", what,
                        where, t ? mmt_json_type_name(t->type) : "none");
    *type = t->string;
    return MMT_OK;
}

mmt_status mmt_tokenizer_json_component(const mmt_json *root, const char *key, const char *what,
                                        const mmt_json **component, const char **type) {
    *component = NULL;
    *type = NULL;
    const mmt_json *v = mmt_json_get(root, key);
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    MMT_TRY(typed_object(v, what, key, type));
    *component = v;
    return MMT_OK;
}

mmt_status mmt_tokenizer_json_model(const mmt_json *root, const char *what, const char *want,
                                    const mmt_json **model) {
    const mmt_json *m = mmt_json_get(root, "model");
    *model = NULL;
    if (!m || m->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model: expected an object", what);
    const mmt_json *t = mmt_json_get(m, "type");
    const char *type = NULL;
    if (t && t->type == MMT_JSON_STRING) type = t->string;
    else if (t) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.type: expected a string, got %s",
                                what, mmt_json_type_name(t->type));
    else if (mmt_json_get(m, "max_input_chars_per_word")) type = "WordPiece";
    else if (mmt_json_get(m, "merges")) type = "BPE";
    else type = "(none)";
    if (strcmp(type, want) != 0) {
        char shown[44];
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: model: type \"%s\" is not supported here (expected %s)", what,
                        mmt_tokenizer_json_shown(type, strlen(type), shown), want);
    }
    *model = m;
    return MMT_OK;
}

mmt_status mmt_tokenizer_json_vocab(const mmt_json *model, const char *what, const mmt_json **vocab,
                                    int64_t *max_id) {
    const mmt_json *v = mmt_json_get(model, "vocab");
    *vocab = NULL;
    *max_id = -1;
    if (!v || v->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.vocab: expected an object {token: id}, got %s",
                        what, v ? mmt_json_type_name(v->type) : "nothing");
    if (v->len == 0 || v->len > INT32_MAX)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.vocab has %zu entries", what, v->len);
    for (size_t i = 0; i < v->len; i++) {
        const mmt_json *id = &v->items[i];
        if (id->type != MMT_JSON_NUMBER || !id->is_integer || id->integer < 0 ||
            id->integer >= MMT_TOKENIZER_JSON_MAX_ID) {
            char shown[44];
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: model.vocab: token \"%s\": id must be an integer in [0, %d), got %s",
                            what, mmt_tokenizer_json_shown(v->keys[i], v->key_lens[i], shown),
                            MMT_TOKENIZER_JSON_MAX_ID,
                            id->type == MMT_JSON_NUMBER ? "another number" : mmt_json_type_name(id->type));
        }
        if (id->integer > *max_id) *max_id = id->integer;
    }
    *vocab = v;
    return MMT_OK;
}

/* A boolean member of an added token; `index` names the entry in messages. */
static mmt_status added_flag(const mmt_json *entry, const char *key, int def, int *out,
                             const char *what, size_t index) {
    char where[48];
    snprintf(where, sizeof where, "added_tokens[%zu]", index);
    return mmt_json_get_bool(entry, key, def, out, what, where);
}

mmt_status mmt_tokenizer_json_added_tokens(const mmt_json *root, const char *what,
                                           mmt_tokenizer_json_added **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    const mmt_json *list = mmt_json_get(root, "added_tokens");
    if (!list || list->type == MMT_JSON_NULL) return MMT_OK;
    if (list->type != MMT_JSON_ARRAY)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: added_tokens: expected an array, got %s", what,
                        mmt_json_type_name(list->type));
    if (list->len == 0) return MMT_OK;
    mmt_tokenizer_json_added *a = mmt_calloc(list->len, sizeof *a);
    if (!a) return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
    mmt_status s = MMT_OK;
    for (size_t i = 0; i < list->len && s == MMT_OK; i++) {
        const mmt_json *e = &list->items[i];
        const mmt_json *id = mmt_json_get(e, "id"), *content = mmt_json_get(e, "content");
        if (e->type != MMT_JSON_OBJECT || !id || !content || content->type != MMT_JSON_STRING ||
            content->len == 0) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT,
                         "%s: added_tokens[%zu]: expected an object with an \"id\" and a non-empty \"content\"",
                         what, i);
            break;
        }
        if (id->type != MMT_JSON_NUMBER || !id->is_integer || id->integer < 0 ||
            id->integer >= MMT_TOKENIZER_JSON_MAX_ID) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: added_tokens[%zu].id: expected an integer in [0, %d)",
                         what, i, MMT_TOKENIZER_JSON_MAX_ID);
            break;
        }
        a[i].content = content->string;
        a[i].len = content->len;
        a[i].id = (int32_t)id->integer;
        /* AddedToken's serde defaults (tokenizers/src/tokenizer/added_vocabulary.rs). */
        s = added_flag(e, "special", 0, &a[i].special, what, i);
        if (s == MMT_OK) s = added_flag(e, "normalized", !a[i].special, &a[i].normalized, what, i);
        if (s == MMT_OK) s = added_flag(e, "lstrip", 0, &a[i].lstrip, what, i);
        if (s == MMT_OK) s = added_flag(e, "rstrip", 0, &a[i].rstrip, what, i);
        if (s == MMT_OK) s = added_flag(e, "single_word", 0, &a[i].single_word, what, i);
    }
    if (s != MMT_OK) {
        mmt_free(a);
        return s;
    }
    *out = a;
    *n = (int64_t)list->len;
    return MMT_OK;
}

/* ---- post_processor -------------------------------------------------------------- */

/* A [token, id] pair of BertProcessing / RobertaProcessing. */
static mmt_status token_pair(const mmt_json *pp, const char *key, const char *what, int32_t *id) {
    const mmt_json *v = mmt_json_get(pp, key);
    if (!v || v->type != MMT_JSON_ARRAY || v->len != 2 || v->items[0].type != MMT_JSON_STRING ||
        v->items[1].type != MMT_JSON_NUMBER || !v->items[1].is_integer || v->items[1].integer < 0 ||
        v->items[1].integer >= MMT_TOKENIZER_JSON_MAX_ID)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: post_processor.%s: expected [token, id]", what, key);
    *id = (int32_t)v->items[1].integer;
    return MMT_OK;
}

/* Appends the ids of special token `name` of a TemplateProcessing to prefix or suffix. */
static mmt_status template_special(const mmt_json *pp, const mmt_json *name, const char *what,
                                   int32_t *ids, int64_t *n) {
    const mmt_json *table = mmt_json_get(pp, "special_tokens");
    const mmt_json *entry = NULL;
    char shown[44];
    for (size_t i = 0; table && table->type == MMT_JSON_OBJECT && i < table->len; i++)
        if (table->key_lens[i] == name->len && memcmp(table->keys[i], name->string, name->len) == 0)
            entry = &table->items[i];
    const mmt_json *list = mmt_json_get(entry, "ids");
    if (!list || list->type != MMT_JSON_ARRAY)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: post_processor: special token \"%s\" has no \"ids\" in special_tokens", what,
                        mmt_tokenizer_json_shown(name->string, name->len, shown));
    for (size_t i = 0; i < list->len; i++) {
        const mmt_json *id = &list->items[i];
        if (id->type != MMT_JSON_NUMBER || !id->is_integer || id->integer < 0 ||
            id->integer >= MMT_TOKENIZER_JSON_MAX_ID)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: post_processor: special token \"%s\": bad id",
                            what, mmt_tokenizer_json_shown(name->string, name->len, shown));
        if (*n >= MMT_TOKENIZER_JSON_MAX_FRAME)
            return mmt_fail(MMT_STATUS_UNSUPPORTED,
                            "%s: post_processor: more than %d special tokens on one side of the text",
                            what, MMT_TOKENIZER_JSON_MAX_FRAME);
        ids[(*n)++] = (int32_t)id->integer;
    }
    return MMT_OK;
}

/* TemplateProcessing's "single": [{"SpecialToken": {"id": name}} ..., {"Sequence": {"id":
 * "A"}}, {"SpecialToken": ...} ...] (processors/template.rs). */
static mmt_status template_frame(const mmt_json *pp, const char *what, mmt_tokenizer_json_frame *f) {
    const mmt_json *single = mmt_json_get(pp, "single");
    if (!single || single->type != MMT_JSON_ARRAY)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: post_processor.single: expected an array", what);
    int sequences = 0;
    for (size_t i = 0; i < single->len; i++) {
        const mmt_json *piece = &single->items[i];
        const mmt_json *special = mmt_json_get(piece, "SpecialToken");
        const mmt_json *sequence = mmt_json_get(piece, "Sequence");
        const mmt_json *name = mmt_json_get(special ? special : sequence, "id");
        if (piece->type != MMT_JSON_OBJECT || piece->len != 1 || !name || name->type != MMT_JSON_STRING)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: post_processor.single[%zu]: expected {\"SpecialToken\" or \"Sequence\": {\"id\": ...}}",
                            what, i);
        if (sequence) {
            if (strcmp(name->string, "A") != 0 || sequences++)
                return mmt_fail(MMT_STATUS_UNSUPPORTED,
                                "%s: post_processor.single: only one sequence, $A, is supported", what);
            continue;
        }
        MMT_TRY(sequences ? template_special(pp, name, what, f->suffix, &f->n_suffix)
                          : template_special(pp, name, what, f->prefix, &f->n_prefix));
    }
    if (!sequences)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: post_processor.single has no $A sequence", what);
    return MMT_OK;
}

mmt_status mmt_tokenizer_json_frame_of(const mmt_json *root, const char *what,
                                       mmt_tokenizer_json_frame *frame) {
    memset(frame, 0, sizeof *frame);
    const mmt_json *pp;
    const char *type;
    MMT_TRY(mmt_tokenizer_json_component(root, "post_processor", what, &pp, &type));
    if (!pp) return MMT_OK;
    if (strcmp(type, "TemplateProcessing") == 0) return template_frame(pp, what, frame);
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        MMT_TRY(token_pair(pp, "cls", what, &frame->prefix[0]));
        MMT_TRY(token_pair(pp, "sep", what, &frame->suffix[0]));
        frame->n_prefix = frame->n_suffix = 1;
        return MMT_OK;
    }
    char shown[44];
    return mmt_fail(MMT_STATUS_UNSUPPORTED,
                    "%s: post_processor: type \"%s\" is not supported (TemplateProcessing, "
                    "BertProcessing, RobertaProcessing or null)",
                    what, mmt_tokenizer_json_shown(type, strlen(type), shown));
}

/* ---- CLIP's pipeline ------------------------------------------------------------- */

static int is_type(const mmt_json *v, const char *type) {
    const mmt_json *t = mmt_json_get(v, "type");
    return v && v->type == MMT_JSON_OBJECT && t && t->type == MMT_JSON_STRING && strcmp(t->string, type) == 0;
}

static int string_is(const mmt_json *v, const char *s) {
    return v && v->type == MMT_JSON_STRING && v->len == strlen(s) && memcmp(v->string, s, v->len) == 0;
}

/* A boolean member that must have the given value; absent means `def`. */
static int flag_is(const mmt_json *obj, const char *key, int def, int want) {
    const mmt_json *v = mmt_json_get(obj, key);
    if (!v || v->type == MMT_JSON_NULL) return def == want;
    return v->type == MMT_JSON_BOOL && v->boolean == want;
}

/* Sequence[NFC, Replace(Regex \s+ -> " "), Lowercase] */
static int clip_normalizer(const mmt_json *n) {
    const mmt_json *list = mmt_json_get(n, "normalizers");
    if (!is_type(n, "Sequence") || !list || list->type != MMT_JSON_ARRAY || list->len != 3) return 0;
    const mmt_json *replace = &list->items[1];
    return is_type(&list->items[0], "NFC") && is_type(replace, "Replace") &&
           string_is(mmt_json_get(mmt_json_get(replace, "pattern"), "Regex"), "\\s+") &&
           string_is(mmt_json_get(replace, "content"), " ") && is_type(&list->items[2], "Lowercase");
}

/* Sequence[Split(Regex CLIP, Removed, invert), ByteLevel(add_prefix_space false, use_regex)] */
static int clip_pre_tokenizer(const mmt_json *p) {
    const mmt_json *list = mmt_json_get(p, "pretokenizers");
    if (!is_type(p, "Sequence") || !list || list->type != MMT_JSON_ARRAY || list->len != 2) return 0;
    const mmt_json *split = &list->items[0], *bytes = &list->items[1];
    return is_type(split, "Split") &&
           string_is(mmt_json_get(mmt_json_get(split, "pattern"), "Regex"), CLIP_SPLIT_REGEX) &&
           string_is(mmt_json_get(split, "behavior"), "Removed") && flag_is(split, "invert", 0, 1) &&
           is_type(bytes, "ByteLevel") && flag_is(bytes, "add_prefix_space", 1, 0) &&
           flag_is(bytes, "use_regex", 1, 1);
}

static mmt_status clip_refuse(const char *what, const char *component, const char *type) {
    char shown[44];
    return mmt_fail(MMT_STATUS_UNSUPPORTED,
                    "%s: %s: %s%s%sis not CLIP's (transformers CLIPTokenizer), which is the only one "
                    "the BPE tokenizer implements",
                    what, component, type ? "type \"" : "", type ? mmt_tokenizer_json_shown(type, strlen(type), shown) : "",
                    type ? "\" " : "");
}

mmt_status mmt_tokenizer_json_check_clip(const mmt_json *root, const char *what) {
    const mmt_json *c, *model;
    const char *type;
    MMT_TRY(mmt_tokenizer_json_model(root, what, "BPE", &model));
    MMT_TRY(mmt_tokenizer_json_component(root, "normalizer", what, &c, &type));
    if (!c || !clip_normalizer(c)) return clip_refuse(what, "normalizer", type);
    MMT_TRY(mmt_tokenizer_json_component(root, "pre_tokenizer", what, &c, &type));
    if (!c || !clip_pre_tokenizer(c)) return clip_refuse(what, "pre_tokenizer", type);
    MMT_TRY(mmt_tokenizer_json_component(root, "decoder", what, &c, &type));
    if (c && strcmp(type, "ByteLevel") != 0) return clip_refuse(what, "decoder", type);
    /* BPE options (models/bpe/serialization.rs); continuing_subword_prefix may be "" or null. */
    const mmt_json *dropout = mmt_json_get(model, "dropout");
    const mmt_json *prefix = mmt_json_get(model, "continuing_subword_prefix");
    if (!string_is(mmt_json_get(model, "end_of_word_suffix"), "</w>"))
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: model.end_of_word_suffix: CLIP's BPE needs \"</w>\"", what);
    if (prefix && prefix->type != MMT_JSON_NULL && !string_is(prefix, ""))
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: model.continuing_subword_prefix: CLIP's BPE has none", what);
    if (dropout && dropout->type != MMT_JSON_NULL)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", what);
    if (!flag_is(model, "byte_fallback", 0, 0) || !flag_is(model, "ignore_merges", 0, 0))
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: model: byte_fallback and ignore_merges must be false for CLIP's BPE", what);
    return MMT_OK;
}
