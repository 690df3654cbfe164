/*
 * target_regex.h — the part of Python's `re` dialect that PEFT configs use, for module names.
 *
 * PEFT matches module names with Python regexes: a string target_modules / exclude_modules /
 * feedforward_modules is tried with re.fullmatch, rank_pattern / alpha_pattern keys and
 * modules_to_save entries are pasted into larger patterns tried with re.match. mmtune must
 * give the same yes/no answers, so this is a small engine for that dialect (Thompson NFA
 * simulation: linear in the name length, no catastrophic backtracking):
 *
 *   literals, `.` (any but \n), [...] / [^...] classes with ranges, \d \D \w \W \s \S
 *   (ASCII meaning), \t \n \r \f \v \a \xhh, escaped punctuation, ( ) (?: ) (?P<name> )
 *   (?#comment), |, * + ? {m} {m,} {,n} {m,n} and their lazy forms (laziness cannot change
 *   a yes/no answer), ^ \A $ \Z.
 *
 * Python's own syntax errors ("nothing to repeat", "bad escape \q", "min repeat greater than
 * max repeat", ...) are errors here too, and where Python reads `{` literally (a{, a{x}) so
 * does this. Refused as MMT_STATUS_UNSUPPORTED with a message naming the construct: inline
 * flags, lookaround, backreferences, \b \B, possessive quantifiers, atomic groups, \u \N
 * escapes, and non-ASCII pattern bytes (module names are ASCII).
 * Checked against Python's verdicts: tests/fixtures/peft/regex.json.
 *
 * A compiled regex owns scratch space for matching, so one regex must not be used by two
 * threads at once.
 */
#ifndef MMT_PEFT_TARGET_REGEX_H
#define MMT_PEFT_TARGET_REGEX_H

#include "core/status.h"

typedef struct mmt_regex mmt_regex;

/* `what` names the pattern's origin in error messages ("adapter_config.json: target_modules"). */
mmt_status mmt_regex_compile(const char *pattern, const char *what, mmt_regex **out);
/* re.fullmatch(pattern, s) is not None */
int mmt_regex_fullmatch(mmt_regex *re, const char *s);
/* re.match(pattern, s) is not None: anchored at the start, not at the end */
int mmt_regex_match(mmt_regex *re, const char *s);
void mmt_regex_free(mmt_regex *re);

#endif
