/*
 * ptb_tokenize.h — pycocoevalcap's tokenization step in C: Stanford CoreNLP 3.4.1's
 * PTBTokenizer run as `java ... PTBTokenizer -preserveLines -lowerCase FILE`, followed by the
 * removal of the punctuation tokens listed in pycocoevalcap/tokenizer/ptbtokenizer.py.
 *
 * Usage:
 *     char *line;                                     // "a man 's dog -lrb- big -rrb- is n't ."
 *     mmt_ptb_tokenize("A man's dog (big) isn't.", &line);        ... mmt_free(line);
 *     char *out[3];                                   // captions as pycocoevalcap leaves them
 *     mmt_ptb_coco_tokenize_lines(captions, 3, out);  ... mmt_free(out[i]) for each
 *
 * pycocoevalcap writes the captions of a batch (all references, or all candidates) one per
 * line into one file, with "\n" inside a caption replaced by a space, and runs the Java
 * tokenizer on it. The Java tokenizer is a JFlex scanner; ptb_tokenize.c reproduces its
 * machinery (longest match, the earlier rule on ties, trailing context) with its rules
 * rewritten from observed behaviour, and tokenizes the batch as one text, so that rules
 * which look past the end of a caption see the next one (or the end of the input), as in
 * Java. What the rules do (tokens are then lowercased as Java's toLowerCase(Locale.ENGLISH)
 * does, final sigma included):
 *   - Words: letters and digits, with internal . ! ? (hello.world, yes!no); soft hyphens
 *     dropped. Hyphenated and underscored compounds stay whole (black-and-white, 5-10,
 *     x_y, o'clock, O'Neill, l'amour), as do a/b forms (and/or, 1/2), AT&T, c++, F#.
 *   - Clitics split off: 's 'm 'd 're 've 'll (also written with ’ ‘ ` &apos;) and n't
 *     (isn't -> is n't, can't -> ca n't, won't -> wo n't); cannot -> can not, gonna gotta
 *     wanna lemme gimme -> gon na ..., 'tis -> 't is, 'twas -> 't was; kept whole: '90s,
 *     'til, 'cause, 'em, 'n', y' (y'all -> y' all), j' d' l', ma'am, Cap'n, c'est, e'er ...
 *   - Periods: split from words at the end of a sentence but kept on abbreviations: titles
 *     (Mr. Dr. St. Mt. Gen. ...), months, weekdays, U.S. states (Calif.; Mass. Ill. Wash.
 *     Pa. ... only when capitalised), company words (Inc. Co. Ltd. Corp. ...), Jr. etc.
 *     vs. cf. a.k.a., single letters and acronyms (a. U.S. e.g. a.m.), no./fig./ca.
 *     before a number. Where such a period probably also ends the sentence (Inc. Jan.
 *     etc. ... before a capital letter or at the end of the input, an acronym before The,
 *     He, ...) an extra "." token follows; a single letter then loses its period.
 *   - Punctuation tokens: , ; : runs of ? and ! . ¡ ¿; 3 to 5 dots, ". . ." and … -> "...";
 *     — – and 3 or 4 hyphens -> "--"; other hyphen runs as written.
 *   - Brackets ( ) [ ] { } -> -lrb- -rrb- -lsb- -rsb- -lcb- -rcb- (pycocoevalcap's list has
 *     them in upper case, so these lowercased tokens stay in the caption).
 *   - Quotes: " -> `` before an ASCII letter, digit or $, else ''; ' -> ` before an ASCII
 *     letter that is followed by a non-space; curly quotes, guillemets ‹ › « » and CP1252 quotes -> LaTeX
 *     quotes (` ' `` ''); two quote characters in a row form one token (‘’ -> `').
 *   - Numbers: 1,000 3.5 .5 -3 +4 12:30; dates 12/25/2014 2014-01-05; fractions 1/2,
 *     "3 1/2" (one token, the space becomes U+00A0), ½ ¼ ¾ ⅓ ⅔ -> 1/2 ...; phone numbers
 *     ("(555) 555-1234" -> "-lrb-555-rrb-\u00a0555-1234", "100 200 300" one token).
 *   - Symbols as tokens: & % + = / * ~ ^ | \ < > @@ ## __ and many Unicode symbols; $ and
 *     US$-style prefixes, £ -> #, € ¤ ₠ -> $, ¢ -> cents; &amp; &lt; &gt; &quot; &apos;
 *     decoded, &nbsp; skipped; SGML tags (<b>, <a href="x y">), URLs, e-mail addresses,
 *     @names, #tags, file names (photo.jpg) and smileys (":)" -> ":-rrb-", ^_^) whole.
 *   - Deleted: characters no rule takes (control characters, letters added to Unicode after
 *     the jar's tables, some symbols, and characters beyond the BMP: Java scans UTF-16, so
 *     an emoji is two surrogates, kept only inside tokens such as URLs and SGML tags).
 *   - Then (the pycocoevalcap step) the tokens '' ' `` ` . ? ! , : - -- ... ; are removed.
 *
 * How it was checked (tools/fixtures/make_caption_metric_fixtures.py, --sweep): identical
 * output to the jar for every code point of planes 0 and 1 in five contexts, over 200,000
 * random strings (caption fragments glued together, character soup), every abbreviation
 * and apostrophe form in several contexts, both inside a batch and at the end of the input.
 *
 * Inputs that can still differ from pycocoevalcap + Java:
 *   - Line breaks other than "\n" (\r, \v, \f, U+2028, U+2029): pycocoevalcap replaces only
 *     "\n", so Java splits such a caption into two lines and every later caption of the
 *     batch is scored against the wrong tokens. Here they are spaces.
 *   - A NUL character (C strings end there; Java deletes it and goes on).
 *   - Rules reconstructed from behaviour rather than from the 3.4.1 source, so a pattern not
 *     exercised by the checks above may differ (most plausibly in the lookahead of rare
 *     contexts: a trailing context whose split is ambiguous, or one that only changes
 *     whether an extra "." is emitted, which pycocoevalcap removes anyway).
 *   - Very long runs without spaces cost quadratic time (as in Java): ~1 s for 10,000
 *     characters such as "a,a,a,...".
 * Errors: a NULL argument (MMT_STATUS_INVALID_ARGUMENT) or invalid UTF-8
 * (MMT_STATUS_BAD_FORMAT, naming the line and byte offset). Nothing is printed.
 */
#ifndef MMT_EVAL_PTB_TOKENIZE_H
#define MMT_EVAL_PTB_TOKENIZE_H

#include <stdint.h>

#include "core/status.h"

/* Tokenizes lines[0..n_lines) as one input file, one line each: out[i] (owned by the caller,
 * mmt_free) gets line i's tokens separated by single spaces, as the jar writes them. On
 * failure every out[i] is NULL. */
mmt_status mmt_ptb_tokenize_lines(const char *const *lines, int64_t n_lines, char **out);

/* One caption alone (the only, so also the last, line of its input). */
mmt_status mmt_ptb_tokenize(const char *text, char **out);

/* pycocoevalcap's post-processing of one output line:
 * ' '.join(w for w in line.rstrip().split(' ') if w not in PUNCTUATIONS). */
mmt_status mmt_ptb_coco_filter(const char *line, char **out);

/* Both steps: what PTBTokenizer().tokenize() of pycocoevalcap returns for these captions,
 * given in the order pycocoevalcap would write them. */
mmt_status mmt_ptb_coco_tokenize_lines(const char *const *lines, int64_t n_lines, char **out);

#endif
