/*
 * test_caption_cli.c — the captioner from the command line, on tests/fixtures/git/tiny-cap
 * (a whole GIT snapshot made by transformers) and five photos with captions:
 *   - `train` tells a captioner by its config.json and trains LoRA, IA3, prompt tuning, prefix
 *     tuning or the whole model; each adapter loads back through the PEFT reader (a full run
 *     writes a snapshot that loads as a GIT model), and LoRA lowers the caption loss;
 *   - prompt tuning (--method prompt, PEFT's PROMPT_TUNING, --prompt-init-text) writes
 *     PEFT's adapter_config.json (CAUSAL_LM, the TEXT init with the snapshot as its
 *     tokenizer), lowers the loss, and `caption` / `eval --adapter` use it; the same adapter on
 *     another base (models/mmtune-git-tiny: 192 channels, not 32) is refused with one line;
 *   - methods a captioner does not take, a bad --max-caption-tokens and a caption file with
 *     a missing image are refused with a one-line error and exit code 2 or 1;
 *   - `eval` on a captioner captions each distinct image once, groups an image's captions as
 *     its references, and reports CIDEr-D / BLEU / ROUGE-L (well above the untrained model's
 *     after training);
 *   - `caption` with the fully trained snapshot says most training captions back (greedy and
 *     beams), keeps to --allowed-words, avoids --bad-words, prints JSON lines with --json,
 *     and refuses bad settings and missing images with one line.
 * (tools/fixtures/check_git_captions.py compares `caption` with transformers + PEFT's
 * generate() string for string; tests/test_generate.c checks the generation itself.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli_run.h"
#include "models/git.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/prompt.h"

#define CAP MMT_FIXTURE_DIR "/git/tiny-cap"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char root[] = "/tmp/mmt_capcli_XXXXXX";
static char data[400];

static void write_data(void) {
    static const char *lines[5][2] = {{"chelsea.jpg", "a gray cat"},
                                      {"rocket_rgba.png", "a rocket in space"},
                                      {"coffee_portrait.jpg", "a cup of coffee"},
                                      {"camera_gray.png", "a man with a camera"},
                                      {"astronaut.png", "an astronaut with a star"}};
    snprintf(data, sizeof data, "%s/captions.jsonl", root);
    FILE *f = fopen(data, "w");
    for (int i = 0; f && i < 5; i++)
        fprintf(f, "{\"image_path\": \"%s/%s\", \"text\": \"%s\"}\n", IMAGES, lines[i][0], lines[i][1]);
    if (f) fclose(f);
}

static double json_number(const char *text, const char *key) {
    const char *p = text ? strstr(text, key) : NULL;
    return p ? atof(p + strlen(key) + 1) : -1; /* after the colon */
}

static void test_train_methods(void) {
    static const char *methods[5] = {"lora", "ia3", "prompt", "prefix", "full"};
    for (int i = 0; i < 5; i++) {
        CHECK_MSG(run("train --model %s --data %s --method %s --steps 30 --batch-size 5 --lr 3e-2 --out %s/%s --quiet", CAP,
                      data, methods[i], root, methods[i]) == 0,
                  "%s: %s", methods[i], err_text ? err_text : "");
        mmt_git *m = NULL;
        mmt_git_run *r = NULL;
        char dir[500];
        snprintf(dir, sizeof dir, "%s/%s/adapter", root, methods[i]);
        if (i == 4) { /* a snapshot */
            CHECK_OK(mmt_git_load(dir, &m));
            mmt_git_free(m);
            continue;
        }
        CHECK_OK(mmt_git_load(CAP, &m));
        if (m) CHECK_OK(mmt_git_run_create(m, &r));
        mmt_adapter *ad = NULL;
        mmt_prompt *pr = NULL;
        if (r) CHECK_OK(mmt_adapter_folders_load(mmt_git_run_iface(r), dir, 0, &ad, &pr));
        CHECK(ad || pr);
        mmt_prompt_free(pr);
        mmt_adapter_free(ad);
        mmt_git_run_free(r);
        mmt_git_free(m);
    }
    /* LoRA learns the five captions: the loss of its last step well below the first's */
    char *metrics = NULL;
    char path[500];
    snprintf(path, sizeof path, "%s/lora/metrics.jsonl", root);
    metrics = check_read_file(path, NULL);
    double first = json_number(metrics, "\"loss\""), last = -1;
    for (const char *p = metrics; p && (p = strstr(p, "\"loss\"")); p++) last = json_number(p, "\"loss\"");
    CHECK_MSG(first > 0 && last > 0 && last < first / 2, "LoRA loss %.3f -> %.3f", first, last);
    free(metrics);
}

static void test_refusals(void) {
    CHECK(run("train --model %s --data %s --method adapter --out %s/x", CAP, data, root) == 2);
    CHECK(err_text && strstr(err_text, "GIT captioner") && strstr(err_text, "lora, ia3, prompt, prefix or full"));
    CHECK(run("train --model %s --data %s --method prompt --prompt-tokens 2 --out %s/x", CAP, data, root) == 2);
    CHECK(run("train --model %s --data %s --method prompt --num-virtual-tokens 46 --out %s/x", CAP, data, root) == 1);
    CHECK(err_text && strstr(err_text, "46 virtual tokens") && count_lines(err_text) == 1);
    CHECK(run("train --model %s --data %s --max-caption-tokens 2 --out %s/x", CAP, data, root) == 2);
    CHECK(err_text && strstr(err_text, "--max-caption-tokens"));
    CHECK(run("train --model %s --data %s --label-smoothing 1.5 --out %s/x", CAP, data, root) == 2);
    CHECK(run("train --model %s --data %s --recompute --out %s/x", CAP, data, root) == 1);
    CHECK(err_text && strstr(err_text, "--recompute is for CLIP") && count_lines(err_text) == 1);
    CHECK(run("train --model %s --data %s --checkpointing --out %s/x", CAP, data, root) == 1);
    CHECK(err_text && strstr(err_text, "--checkpointing is for CLIP"));
    char bad[450];
    snprintf(bad, sizeof bad, "%s/missing.jsonl", root);
    FILE *f = fopen(bad, "w");
    if (f) fprintf(f, "{\"image_path\": \"%s/no-such.png\", \"text\": \"a cat\"}\n", root), fclose(f);
    CHECK(run("train --model %s --data %s --out %s/y --quiet", CAP, bad, root) == 1);
    CHECK(err_text && strstr(err_text, "no-such.png") && count_lines(err_text) == 1);
}

static int count_exact(const char *out) {
    static const char *want[5] = {"a gray cat", "a rocket in space", "a cup of coffee", "a man with a camera",
                                  "an astronaut with a star"};
    int hits = 0;
    for (int i = 0; i < 5; i++) {
        char line[200];
        snprintf(line, sizeof line, "\t%s\n", want[i]);
        hits += out && strstr(out, line) != NULL;
    }
    return hits;
}

/* The words of allowed_words.txt in test_caption, as words_in takes a list. */
#define ALLOWED "|a|cup|of|coffee|red|circle|"

/* Checks that every space-separated word of text[0..len) is in `list` ("|w1|w2|...|");
 * returns how many words there were. */
static int words_in(const char *text, size_t len, const char *list, const char *what) {
    int words = 0;
    for (const char *w = text, *end = text + len; w < end;) {
        size_t n = strcspn(w, " ");
        if (n > (size_t)(end - w)) n = (size_t)(end - w);
        char word[66] = "|";
        memcpy(word + 1, w, n < 63 ? n : 63);
        strcat(word, "|");
        CHECK_MSG(n == 0 || strstr(list, word), "%s: '%.*s' is not an allowed word", what, (int)n, w);
        words += n > 0;
        w += n + 1;
    }
    return words;
}

/* words_in over the captions of `mmtune caption`'s PATH<TAB>caption lines; the words' count. */
static int caption_lines_words(const char *out, const char *list, const char *what) {
    int words = 0;
    for (const char *line = out; line && *line;) {
        const char *tab = strchr(line, '\t'), *end = strchr(line, '\n');
        if (!tab || !end) break;
        words += words_in(tab + 1, (size_t)(end - tab - 1), list, what);
        line = end + 1;
    }
    return words;
}

static void test_caption(void) {
    char snap[450];
    snprintf(snap, sizeof snap, "%s/full/adapter", root); /* written by test_train_methods */
    CHECK(run("caption --model %s --data %s", snap, data) == 0);
    CHECK(out_text && count_lines(out_text) == 5);
    int greedy = count_exact(out_text);
    CHECK(run("caption --model %s --data %s --beams 3", snap, data) == 0);
    int beams = count_exact(out_text);
    printf("     full fine-tuning, 30 steps: %d of 5 captions exact (greedy), %d (3 beams)\n", greedy, beams);
    CHECK(greedy >= 3 && beams >= 3);
    CHECK(run("caption --model %s --image %s/chelsea.jpg --json --sample --seed 3", snap, IMAGES) == 0);
    CHECK(out_text && strstr(out_text, "{\"image\": \"") && strstr(out_text, "\"caption\": \""));
    /* a constrained vocabulary: every word of every caption is one of the allowed words */
    char words[450];
    snprintf(words, sizeof words, "%s/allowed.txt", root);
    FILE *f = fopen(words, "w");
    if (f) fputs("a\ncup\nof\ncoffee\nred\ncircle\n", f), fclose(f);
    CHECK(run("caption --model %s --data %s --allowed-words %s", snap, data, words) == 0);
    caption_lines_words(out_text, ALLOWED, "caption --allowed-words");
    snprintf(words, sizeof words, "%s/bad.txt", root);
    f = fopen(words, "w");
    if (f) fputs("cat\ncoffee\n", f), fclose(f);
    CHECK(run("caption --model %s --data %s --bad-words %s", snap, data, words) == 0);
    CHECK(out_text && count_lines(out_text) == 5);
    for (char *line = out_text; line && *line;) { /* the captions, after each path's tab */
        char *tab = strchr(line, '\t'), *end = strchr(line, '\n');
        if (!tab || !end) break;
        *end = '\0';
        CHECK_MSG(!strstr(tab, " cat") && !strstr(tab, "coffee"), "bad words in '%s'", tab + 1);
        line = end + 1;
    }
    /* refusals */
    CHECK(run("caption --model %s --image %s/chelsea.jpg --beams 0", snap, IMAGES) == 1);
    CHECK(err_text && count_lines(err_text) == 1);
    CHECK(run("caption --model %s --image %s/chelsea.jpg --top-p 2 --sample", snap, IMAGES) == 1);
    CHECK(run("caption --model %s --image %s/none.png", snap, root) == 1);
    CHECK(err_text && strstr(err_text, "none.png") && count_lines(err_text) == 1);
    CHECK(run("caption --model %s", snap) == 2);
    CHECK(run("caption --model %s --image x.png --early-stopping maybe", snap) == 2);
    CHECK(run("caption --model %s/../../clip/tiny-a --image %s/chelsea.jpg", CAP, IMAGES) == 1);
    CHECK(err_text && strstr(err_text, "not a GIT"));
}

static void test_prompt_tuning(void) {
    CHECK_MSG(run("train --model %s --data %s --method prompt --num-virtual-tokens 4 --prompt-init-text 'a cup of' "
                  "--steps 40 --batch-size 5 --lr 0.1 --out %s/pt --quiet", CAP, data, root) == 0,
              "%s", err_text ? err_text : "");
    char path[500];
    snprintf(path, sizeof path, "%s/pt/adapter/adapter_config.json", root);
    char *cfg = check_read_file(path, NULL);
    CHECK(cfg && strstr(cfg, "\"PROMPT_TUNING\"") && strstr(cfg, "\"CAUSAL_LM\"") && strstr(cfg, "\"num_virtual_tokens\": 4") &&
          strstr(cfg, "\"prompt_tuning_init\": \"TEXT\"") && strstr(cfg, "\"prompt_tuning_init_text\": \"a cup of\"") &&
          strstr(cfg, "\"tokenizer_name_or_path\": \"" CAP "\""));
    free(cfg);
    snprintf(path, sizeof path, "%s/pt/metrics.jsonl", root);
    char *metrics = check_read_file(path, NULL);
    double first = json_number(metrics, "\"loss\""), last = -1;
    for (const char *p = metrics; p && (p = strstr(p, "\"loss\"")); p++) last = json_number(p, "\"loss\"");
    printf("     prompt tuning, 4 tokens, 40 steps: loss %.3f -> %.3f\n", first, last);
    CHECK_MSG(first > 0 && last > 0 && last < 0.8 * first, "prompt tuning loss %.3f -> %.3f", first, last);
    free(metrics);
    CHECK(run("caption --model %s --adapter %s/pt/adapter --data %s --beams 2", CAP, root, data) == 0);
    CHECK(out_text && count_lines(out_text) == 5);
    CHECK(run("eval --model %s --adapter %s/pt/adapter --data %s --samples 0", CAP, root, data) == 0);
    CHECK(out_text && strstr(out_text, "\"cider_d\""));
    /* made for tiny-cap (32 channels): the default captioner (192) refuses it in one line */
    CHECK(run("caption --model %s/models/mmtune-git-tiny --adapter %s/pt/adapter --image %s/chelsea.jpg", MMT_SOURCE_DIR,
              root, IMAGES) == 1);
    CHECK(err_text && strstr(err_text, "prompt_embeddings") && count_lines(err_text) == 1);
    CHECK(run("eval --model %s/models/mmtune-git-tiny --adapter %s/pt/adapter --data %s", MMT_SOURCE_DIR, root, data) == 1);
    CHECK(err_text && strstr(err_text, "prompt_embeddings") && count_lines(err_text) == 1);
}

static void test_eval(void) {
    char snap[450], multi[450];
    snprintf(snap, sizeof snap, "%s/full/adapter", root);
    snprintf(multi, sizeof multi, "%s/multi.jsonl", root);
    /* two more references for two of the images */
    CHECK(sh("cp %s %s && printf '{\"image_path\": \"%s/chelsea.jpg\", \"text\": \"a cat\"}\n"
             "{\"image_path\": \"%s/astronaut.png\", \"text\": \"an astronaut\"}\n' >> %s",
             data, multi, IMAGES, IMAGES, multi) == 0);
    CHECK(run("eval --model %s --data %s --samples 5", snap, multi) == 0);
    CHECK(out_text && strstr(out_text, "\"images\": 5, \"pairs\": 7"));
    CHECK(out_text && strstr(out_text, "\"references\": [\"a gray cat\", \"a cat\"]"));
    double trained = out_text && strstr(out_text, "\"cider_d\"") ? atof(strstr(out_text, "\"cider_d\"") + 11) : -1;
    CHECK(run("eval --model %s --data %s --samples 0 --out %s/eval.json", CAP, data, root) == 0);
    double untrained = out_text && strstr(out_text, "\"cider_d\"") ? atof(strstr(out_text, "\"cider_d\"") + 11) : -1;
    printf("     CIDEr-D: untrained %.3f, after full fine-tuning %.3f\n", untrained, trained);
    CHECK(trained > 1 && untrained >= 0 && untrained < 0.5);
    CHECK(exists("%s/eval.json", root));
    CHECK(run("eval --model %s --data %s --beams 0", CAP, data) == 2);
    /* eval decodes as caption does: --allowed-words keeps every sample caption to the list */
    char words[450];
    snprintf(words, sizeof words, "%s/allowed.txt", root); /* written by test_caption */
    CHECK(run("eval --model %s --data %s --samples 5 --allowed-words %s", snap, data, words) == 0);
    const char *c = out_text;
    int captions = 0;
    while (c && (c = strstr(c, "\"caption\": \""))) {
        c += 12;
        const char *end = strchr(c, '"');
        if (end) words_in(c, (size_t)(end - c), ALLOWED, "eval --allowed-words");
        captions++;
    }
    CHECK(captions == 5);
    CHECK(run("eval --model %s --data %s --allowed-words %s --bad-words %s", snap, data, words, words) == 2);
    CHECK(err_text && strstr(err_text, "exclude each other"));
    /* an allowed word the vocabulary lacks ([UNK]) could never be written: refused, not an empty caption */
    char unk[500];
    snprintf(unk, sizeof unk, "%s/unk_words.txt", root);
    FILE *f = fopen(unk, "w");
    if (f) fputs("cup\nzzzqqxxj\n", f), fclose(f);
    CHECK(run("caption --model %s --image %s/chelsea.jpg --allowed-words %s", CAP, IMAGES, unk) == 1 && err_text &&
          strstr(err_text, "word 1 (non-empty ones counted) tokenizes to [UNK]"));
    CHECK(run("caption --model %s --data %s/pairs.csv", CAP, root) == 2 && err_text && strstr(err_text, "not CSV"));
    /* beams past the cap: an error at once, not a run that takes hours */
    CHECK(run("caption --model %s --image %s/chelsea.jpg --beams 100000", CAP, IMAGES) != 0 && err_text &&
          strstr(err_text, "num_beams is 100000; it must be at most 256"));
    /* --batch beyond the images given: sized by the images, same caption as batch 1 */
    CHECK(run("caption --model %s --image %s/chelsea.jpg --max-new-tokens 5", CAP, IMAGES) == 0);
    char *one = out_text ? strdup(out_text) : NULL;
    CHECK(run("caption --model %s --image %s/chelsea.jpg --max-new-tokens 5 --batch 100000000", CAP, IMAGES) == 0);
    CHECK(one && out_text && !strcmp(one, out_text));
    free(one);
}

/* The medical example in small (docs/medical.md): the default captioner trains on DICOM
 * studies with reports (synth --domain xray), then captions a DICOM file constrained to
 * the reports' vocabulary.txt. */
static void test_dicom_reports(void) {
    char model[450];
    snprintf(model, sizeof model, "%s/models/mmtune-git-tiny", MMT_SOURCE_DIR);
    CHECK(run("synth --domain xray --out %s/xray --split-sizes 24,0,4 --size 32 --seed 2", root) == 0);
    CHECK(run("train --model %s --data %s/xray/train_coco.json --method full --steps 12 --batch-size 8 --lr 1e-3 "
              "--seed 1 --quiet --out %s/xray_run", model, root, root) == 0);
    CHECK(run("caption --model %s/xray_run/adapter --image %s/xray/images/test/000000.dcm --image "
              "%s/xray/images/test/000001.dcm --allowed-words %s/xray/vocabulary.txt", root, root, root, root) == 0);
    CHECK(out_text && count_lines(out_text) == 2);
    const char *vocabulary = "|no|acute|findings|the|lungs|are|clear|normal|chest|small|large|nodule|in|right|left|upper|"
                             "middle|lower|zone|lung|a|pleural|effusion|on|heart|is|enlarged|cardiomegaly|";
    CHECK(caption_lines_words(out_text, vocabulary, "a report") >= 2);
    /* train --window: the studies are rendered with it (another first loss), recorded in run.json */
    double first[2] = {-1, -1};
    for (int w = 0; w < 2; w++) {
        CHECK(run("train --model %s --data %s/xray/train_coco.json --method full --steps 1 --batch-size 8 --seed 1 "
                  "--quiet --out %s/xray_w%d %s", model, root, root, w, w ? "--window 900,300" : "") == 0);
        const char *l = out_text ? strstr(out_text, "\"final_loss\": ") : NULL;
        if (l) first[w] = atof(l + 14);
    }
    printf("     one step on DICOM studies: loss %.6f with each file's window, %.6f with --window 900,300\n", first[0],
           first[1]);
    CHECK(first[0] > 0 && first[1] > 0 && fabs(first[0] - first[1]) > 1e-4);
    CHECK(sh("grep -q '\"dicom_window\": \"900,300\"' %s/xray_w1/run.json", root) == 0);
    CHECK(run("train --model %s --data %s/xray/train_coco.json --method full --steps 1 --out %s/xray_bad --window 5,0",
              model, root, root) != 0);
    CHECK(err_text && strstr(err_text, "--window") && count_lines(err_text) == 1);
    CHECK(run("eval --model %s/xray_run/adapter --data %s/xray/test_coco.json --samples 0 --allowed-words "
              "%s/xray/vocabulary.txt", root, root, root) == 0);
    CHECK(out_text && strstr(out_text, "\"images\": 4, \"pairs\": 12"));
}

int main(void) {
    if (!mkdtemp(root)) return 1;
    cli_run_setup(root);
    write_data();
    RUN(test_train_methods);
    RUN(test_refusals);
    RUN(test_prompt_tuning);
    RUN(test_caption);
    RUN(test_eval);
    RUN(test_dicom_reports);
    cli_run_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
