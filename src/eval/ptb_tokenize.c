/*
 * ptb_tokenize.c — an emulation of Stanford CoreNLP 3.4.1's PTBTokenizer as pycocoevalcap
 * runs it (see ptb_tokenize.h for what is emulated and what can still differ).
 *
 * The Java tokenizer is a JFlex scanner: a list of rules, each a regular expression with an
 * optional trailing context (r1/r2: r1 is the token, r2 must follow it). At each position
 * the rule with the longest match wins, trailing context included, and among equally long
 * matches the one listed first. This file reproduces that machinery instead of hand-coding
 * each rule: the rules below are written in a small regular-expression syntax close to
 * JFlex's, compiled once per call into one Thompson NFA (every rule's start state in one
 * list, each accept state tagged with its rule), and simulated over code points. A rule's
 * action then turns the matched text into the token (quote, bracket, dash and currency
 * normalisation, push-back of clitics), as the Java actions do.
 *
 * Pattern syntax: literals (ASCII letters match either case, as under JFlex %caseless),
 * `\uXXXX` and `\c` escapes, classes `[...]` with ranges, `^` negation, `[^]` (any
 * character) and the named sets `[:letter:]`, `[:digit:]`, `[:uppercase:]` (classes are
 * case-sensitive, as in JFlex), `.` (anything but a newline), `{NAME}` for a macro,
 * grouping, `|`, `*`, `+`, `?`, `{m}` and `{m,n}`.
 */
#include "eval/ptb_tokenize.h"

#include <string.h>

#include "core/alloc.h"
#include "core/json.h"
#include "data/unicode.h"

/* ------------------------------------------------------------------------------------ */
/* The rules of CoreNLP 3.4.1's PTBLexer, in its order, with the macro names of
 * PTBLexer.flex. They were rebuilt from the jar's behaviour (the abbreviation lists, which
 * characters each class holds, which quotes count as left or right, ...) and checked
 * against it: see tools/fixtures/make_caption_metric_fixtures.py. Macros first.        */

typedef struct macro_def {
    const char *name;
    const char *pattern;
} macro_def;

static const macro_def MACROS[] = {
    {"SGML",
     "<([!?][A-Za-z\\-][^>\\r\\n]*|[A-Za-z][A-Za-z0-9_:.\\-]*([ ]+([A-Za-z][A-Za-z0-9_:.\\-]*|"
     "[A-Za-z][A-Za-z0-9_:.\\-]*[ ]*=[ ]*('[^']*'|\"[^\"]*\")))*[ ]*\\/?|"
     "\\/[A-Za-z][A-Za-z0-9_:.\\-]*)[ ]*>"},
    {"SPMDASH", "&(MD|mdash|ndash);|[\\u0096\\u0097\\u2013\\u2014\\u2015]"},
    {"SPAMP", "&amp;"},
    {"SPPUNC", "&(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"},
    {"SPLET", "&[aeiouAEIOU](acute|grave|uml);"},
    {"SPACE", "[ \\t\\u00A0\\u2000-\\u200A\\u3000]"},
    {"SPACES", "{SPACE}+"},
    {"NEWLINE", "\\r|\\r?\\n|\\u2028|\\u2029|\\u000B|\\u000C|\\u0085"},
    {"SPACENL", "{SPACE}|{NEWLINE}"},
    {"SPACENLS", "({SPACENL})+"},
    {"SENTEND", "{SPACENL}({SPACENL}|[:uppercase:]|{SGML})"},
    {"DIGIT", "[:digit:]|[\\u07C0-\\u07C9]"},
    {"DATE", "{DIGIT}{1,2}[\\-\\/]{DIGIT}{1,2}[\\-\\/]{DIGIT}{2,4}"},
    {"NUM", "{DIGIT}+|{DIGIT}*([.:,\\u00AD\\u066B\\u066C]{DIGIT}+)+"},
    {"NUMBER", "[\\-+]?{NUM}"},
    {"SUBSUPNUM",
     "[\\u207A\\u207B\\u208A\\u208B]?([\\u2070\\u00B9\\u00B2\\u00B3\\u2074-\\u2079]+|"
     "[\\u2080-\\u2089]+)"},
    {"FRAC", "({DIGIT}{1,4}[\\- \\u00A0])?{DIGIT}{1,4}(\\\\?\\/|\\u2044){DIGIT}{1,4}"},
    {"FRAC2", "[\\u00BC\\u00BD\\u00BE\\u2153-\\u215E]"},
    {"DOLSIGN", "[A-Z]*\\$|#"},
    {"DOLSIGN2",
     "[\\u00A2\\u00A3\\u00A4\\u00A5\\u0080\\u20A0\\u20AC\\u060B\\u0E3F\\u20A4\\uFFE0\\uFFE1"
     "\\uFFE5\\uFFE6]"},
    /* Letters: Java's isLetter plus combining marks and other word-internal characters. */
    {"LETTER",
     "[:letter:]|{SPLET}|[\\u00AD\\u0237-\\u024F\\u02C2-\\u02C5\\u02D2-\\u02DF\\u02E5-\\u02FF"
     "\\u0300-\\u036F\\u0370-\\u037D\\u0384\\u0385\\u03CF\\u03F6\\u03FC-\\u03FF\\u0483-\\u0487"
     "\\u04CF\\u04F6-\\u04FF\\u0510-\\u0525\\u055A-\\u055F\\u0591-\\u05BD\\u05BF\\u05C1\\u05C2"
     "\\u05C4\\u05C5\\u05C7\\u0615-\\u061A\\u063B-\\u063F\\u064B-\\u065E\\u0670\\u06D6-\\u06EF"
     "\\u06FA-\\u06FF\\u070F\\u0711\\u0730-\\u074F\\u0750-\\u077F\\u07A6-\\u07B1\\u07CA-\\u07F5"
     "\\u07FA\\u0900-\\u0903\\u093C\\u093E-\\u094E\\u0951-\\u0955\\u0962-\\u0963\\u0981-\\u0983"
     "\\u09BC-\\u09C4\\u09C7\\u09C8\\u09CB-\\u09CD\\u09D7\\u09E2\\u09E3\\u0A01-\\u0A03\\u0A3C"
     "\\u0A3E-\\u0A4F\\u0A81-\\u0A83\\u0ABC-\\u0ACF\\u0B82\\u0BBE-\\u0BC2\\u0BC6-\\u0BC8"
     "\\u0BCA-\\u0BCD\\u0C01-\\u0C03\\u0C3E-\\u0C56\\u0D3E-\\u0D44\\u0D46-\\u0D48\\u0E30-\\u0E3A"
     "\\u0E47-\\u0E4E\\u0EB1-\\u0EBC\\u0EC8-\\u0ECD]"},
    {"WORD", "{LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*"},
    {"FILENAME_EXT",
     "bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|"
     "pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip"},
    {"FILENAME", "({LETTER}|{DIGIT})+(\\.({LETTER}|{DIGIT})+)*(\\.{FILENAME_EXT})"},
    {"APOS", "['\\u0092\\u2019]|&apos;"},
    {"APOSETCETERA", "{APOS}|[`\\u0091\\u2018\\u201B]"},
    {"HYPHEN", "[\\-_\\u058A\\u2010\\u2011]"},
    {"HYPHENS", "\\-+"},
    {"ALNUM", "[:letter:]|[:digit:]"},
    {"THING",
     "([dDoOlL]{APOSETCETERA}({ALNUM}))?({ALNUM})+"
     "({HYPHEN}([dDoOlL]{APOSETCETERA}({ALNUM}))?({ALNUM})+)*"},
    {"THINGA", "[A-Z]+(([+&]|{SPAMP})[A-Z]+)+"},
    {"THING3", "[A-Za-z0-9]+(\\-[A-Za-z]+){0,2}(\\\\?\\/[A-Za-z0-9]+(\\-[A-Za-z]+){0,2}){1,2}"},
    {"ACRO2", "[A-Za-z](\\.[A-Za-z])+|(Canada|Sino|Korean|EU|Japan|non)\\-U\\.S|"
              "U\\.S\\.\\-(U\\.K|U\\.S\\.S\\.R)"},
    {"HTHING", "[A-Za-z0-9][A-Za-z0-9.,\\u00AD]*(\\-([A-Za-z0-9\\u00AD]+|{ACRO2}\\.))+"},
    {"REDAUX", "{APOS}([msdMSD]|re|ve|ll)"},
    {"SWORD", "[A-Za-z\\u00AD]*[A-MO-Za-mo-z]\\u00AD*"},
    {"SREDAUX", "n{APOSETCETERA}t"},
    {"APOWORD",
     "{APOS}n{APOS}?|[lLdDjJ]{APOS}|Dunkin{APOS}|somethin{APOS}|ol{APOS}|{APOS}em|"
     "[A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]*|{APOS}[2-9]0s|{APOS}till?|"
     "[:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]*|{APOS}cause|"
     "cont'd\\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O{APOSETCETERA}o"},
    {"APOWORD2", "y{APOS}"},
    {"FULLURL", "https?:\\/\\/[^ \\t\\n\\f\\r\"<>|(){}]+[^ \\t\\n\\f\\r\"<>|.!?(){},\\-]"},
    {"LIKELYURL",
     "((www\\.([^ \\t\\n\\f\\r\"<>|.!?(){},]+\\.)+[a-zA-Z]{2,4})|"
     "(([^ \\t\\n\\f\\r\"`'<>|.!?(){},-_$]+\\.)+(com|net|org|edu)))"
     "(\\/[^ \\t\\n\\f\\r\"<>|()]+[^ \\t\\n\\f\\r\"<>|.!?(){},\\-])?"},
    {"EMAIL",
     "(&lt;|<)?[a-zA-Z0-9][^ \\t\\n\\f\\r\"<>|()\\u00A0{}]*@"
     "([^ \\t\\n\\f\\r\"<>|(){}.\\u00A0]+\\.)*([^ \\t\\n\\f\\r\"<>|(){}.\\u00A0]+)(&gt;|>)?"},
    {"TWITTER", "@[a-zA-Z_][a-zA-Z_0-9]*|#({LETTER})+"},
    {"ABMONTH", "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"},
    {"ABDAYS", "Mon|Tue|Tues|Wed|Thu|Thurs|Fri"},
    {"ABSTATE",
     "Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|"
     "Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo"},
    {"ACRO", "[A-Za-z](\\.[A-Za-z])*|(Canada|Sino|Korean|EU|Japan|non)\\-U\\.S|"
             "U\\.S\\.\\-(U\\.K|U\\.S\\.S\\.R)"},
    {"ABTITLE",
     "Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|"
     "Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|"
     "Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc"},
    {"ABCOMP", "Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys"},
    {"ABCOMP2", "Invt|Elec|Natl|M[ft]g|Dept"},
    {"ABNUM", "tel|est|ext|sq"},
    {"ABPTIT", "Jr|Sr|Bros|(Ed|Ph)\\.D|Blvd|Rd|Esq"},
    {"ABBREV1",
     "({ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\\."},
    {"ABBREV4",
     "[A-Za-z]|{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\\.k\\.a|cf|TREAS|{ACRO}|{ABCOMP2}|Ph"},
    {"ABBREV2", "({ABBREV4})\\."},
    {"ACRONYM", "({ACRO})\\."},
    {"ABBREV3", "(ca|figs?|prop|nos?|art|bldg|pp|op)\\."},
    /* Capitalised words after which an acronym's period also ends the sentence. */
    {"SENTSTART",
     "[A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[D]id|[D]uring|"
     "[E]arlier|[H]e|[H]er|[H]ere|[H]is|[H]ow|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|"
     "[M]r\\.|[M]s\\.|[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|"
     "[T]hat|[T]he|[T]heir|[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|"
     "[Y]et|[Y]ou|{SGML}"},
    {"PHONE",
     "(\\([0-9]{2,3}\\)[ \\u00A0]?|(\\+\\+?)?([0-9]{2,4}[\\- \\u00A0])?[0-9]{2,4}[\\- \\u00A0])"
     "[0-9]{3,4}[\\- \\u00A0]?[0-9]{3,5}|((\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\."
     "[0-9]{3,5}"},
    {"FAKEDUCKFEET", "<<|>>"},
    {"LESSTHAN", "<|&lt;"},
    {"GREATERTHAN", ">|&gt;"},
    {"LDOTS", "\\.\\.\\.\\.?\\.?|[\\u0085\\u2026]"},
    {"SPACEDLDOTS", "\\.[ \\u00A0](\\.[ \\u00A0]){1,3}\\."},
    {"FNMARKS", "@+|#+|_+"},
    {"ASTS", "\\*+|(\\\\\\*){1,3}"},
    {"INSENTP", "[,;:\\u3001]"},
    {"QUOTES", "{APOS}|''|[`\\u2018-\\u201F\\u0091-\\u0094\\u2039\\u203A\\u00AB\\u00BB]{1,2}"},
    {"DBLQUOT", "\"|&quot;"},
    {"TBSPEC", "\\-(RRB|LRB|RCB|LCB|RSB|LSB)\\-|C\\.D\\.s|pro\\-|anti\\-|S(&|&amp;)P\\-500|"
               "S(&|&amp;)Ls|Cap{APOS}n|c{APOS}est"},
    {"TBSPEC2", "{APOS}[0-9][0-9]"},
    {"SMILEY", "[<>]?[:;=][\\-o\\*']?[\\(\\)DPdpO\\\\{@\\|\\[\\]]"},
    {"ASIANSMILEY",
     "[\\^x=~<>]\\.\\[\\^x=~<>]|[\\-\\^x=~<>']_[\\-\\^x=~<>']|"
     "\\([\\-\\^x=~<>'][_.]?[\\-\\^x=~<>']\\)|\\([\\^x=~<>']\\-[\\^x=~<>'`]\\)"},
    {"MISCSYMBOL",
     "[+%&~\\^|\\\\\\u00A6\\u00A7\\u00A8\\u00A9\\u00AC\\u00AE\\u00AF\\u00B0-\\u00B3"
     "\\u00B4-\\u00BA\\u00D7\\u00F7\\u0387\\u05BE\\u05C0\\u05C3\\u05C6\\u05F3\\u05F4"
     "\\u0600-\\u0603\\u0606-\\u060A\\u060C\\u0614\\u061B\\u061E\\u066A\\u066D\\u0703-\\u070D"
     "\\u07F6\\u07F7\\u07F8\\u0964\\u0965\\u0E4F\\u1FBD\\u2016\\u2017\\u2020-\\u2023"
     "\\u2030-\\u2038\\u203B\\u203E-\\u2042\\u2044\\u207A-\\u207F\\u208A-\\u208E\\u2100-\\u214F"
     "\\u2190-\\u21FF\\u2200-\\u2BFF\\u3012\\u30FB\\uFF01-\\uFF0F\\uFF1A-\\uFF20\\uFF3B-\\uFF40"
     "\\uFF5B-\\uFF65]"},
};

/* What a rule does with the text it matched (the Java action, reduced to the options
 * pycocoevalcap runs with: PTB3 escaping, LaTeX quotes, no escaping of / and *). */
typedef enum rule_action {
    ACTION_KEEP,          /* the text as matched */
    ACTION_SOFT_HYPHENS,  /* without U+00AD soft hyphens ("-" if nothing is left) */
    ACTION_PUSHBACK,      /* all but the last `arg` characters, which are scanned again */
    ACTION_PERIOD_AGAIN,  /* the text; its final period is scanned again (a "." follows) */
    ACTION_ACRONYM,       /* as ACTION_PERIOD_AGAIN, but a single letter loses its period */
    ACTION_QUOTES_LEFT,   /* LaTeX quotes, an ASCII quote read as opening */
    ACTION_QUOTES_RIGHT,  /* LaTeX quotes, an ASCII quote read as closing */
    ACTION_REPLACE,       /* the fixed text `text` */
    ACTION_NBSP,          /* spaces become U+00A0 */
    ACTION_NBSP_PARENS,   /* spaces become U+00A0, ( ) become -LRB- -RRB- */
    ACTION_PARENS,        /* ( ) become -LRB- -RRB- */
    ACTION_AMPERSAND,     /* &amp; becomes & */
    ACTION_CURRENCY,      /* cent and pound signs become "cents" and "#", euro-like ones "$" */
    ACTION_FRACTION,      /* vulgar fractions 1/4 1/2 3/4 1/3 2/3 become ASCII */
    ACTION_HYPHENS,       /* a run of 3 or 4 hyphens becomes "--" */
    ACTION_SKIP,          /* white space: no token */
    ACTION_DELETE         /* untokenizable character: no token */
} rule_action;

typedef struct rule_def {
    const char *pattern;  /* the token (JFlex r1) */
    const char *trailing; /* the context that must follow (JFlex r2), or NULL */
    rule_action action;
    int arg;
    const char *text;
} rule_def;

static const rule_def RULES[] = {
    {"c\\+\\+|(c|f)#", NULL, ACTION_KEEP, 0, NULL},
    {"cannot|'twas", NULL, ACTION_PUSHBACK, 3, NULL},
    {"'tis|gonna|gotta|lemme|gimme|wanna", NULL, ACTION_PUSHBACK, 2, NULL},
    {"{SGML}", NULL, ACTION_NBSP, 0, NULL},
    {"{SPMDASH}", NULL, ACTION_REPLACE, 0, "--"},
    {"{SPAMP}", NULL, ACTION_REPLACE, 0, "&"},
    {"{SPPUNC}", NULL, ACTION_KEEP, 0, NULL},
    {"{WORD}", "{REDAUX}", ACTION_SOFT_HYPHENS, 0, NULL},
    {"{SWORD}", "{SREDAUX}", ACTION_SOFT_HYPHENS, 0, NULL},
    {"{WORD}", NULL, ACTION_SOFT_HYPHENS, 0, NULL},
    {"{APOWORD}", NULL, ACTION_KEEP, 0, NULL},
    {"{APOWORD2}", "[:letter:]", ACTION_KEEP, 0, NULL},
    {"{FULLURL}", NULL, ACTION_KEEP, 0, NULL},
    {"{LIKELYURL}", NULL, ACTION_KEEP, 0, NULL},
    {"{EMAIL}", NULL, ACTION_KEEP, 0, NULL},
    {"{TWITTER}", NULL, ACTION_KEEP, 0, NULL},
    {"{REDAUX}", "[^A-Za-z]", ACTION_QUOTES_RIGHT, 0, NULL},
    {"{SREDAUX}", "[^A-Za-z]", ACTION_QUOTES_RIGHT, 0, NULL},
    {"{DATE}", NULL, ACTION_KEEP, 0, NULL},
    {"{NUMBER}", NULL, ACTION_SOFT_HYPHENS, 0, NULL},
    {"{SUBSUPNUM}", NULL, ACTION_KEEP, 0, NULL},
    {"{FRAC}", NULL, ACTION_NBSP, 0, NULL},
    {"{FRAC2}", NULL, ACTION_FRACTION, 0, NULL},
    {"{TBSPEC}", NULL, ACTION_KEEP, 0, NULL},
    {"{THING3}", NULL, ACTION_KEEP, 0, NULL},
    {"{DOLSIGN}", NULL, ACTION_KEEP, 0, NULL},
    {"{DOLSIGN2}", NULL, ACTION_CURRENCY, 0, NULL},
    {"{ACRONYM}", "{SPACENLS}({SENTSTART}){SPACENL}", ACTION_ACRONYM, 0, NULL},
    {"{ABBREV3}", "{SPACENL}?[:digit:]", ACTION_KEEP, 0, NULL},
    {"(pty|pte|pvt|co)\\.", "{SPACE}(ltd|lim)", ACTION_KEEP, 0, NULL},
    {"{ABBREV1}", "{SENTEND}", ACTION_PERIOD_AGAIN, 0, NULL},
    {"{ABBREV1}", "[^][^]", ACTION_KEEP, 0, NULL},
    {"{ABBREV1}", NULL, ACTION_PERIOD_AGAIN, 0, NULL},
    {"{ABBREV2}", NULL, ACTION_KEEP, 0, NULL},
    {"{ABBREV4}", "{SPACE}", ACTION_KEEP, 0, NULL},
    {"{ACRO}", "{SPACENL}", ACTION_KEEP, 0, NULL},
    {"{TBSPEC2}", "{SPACENL}", ACTION_KEEP, 0, NULL},
    {"{FILENAME}", "{SPACENL}|[.?!,]", ACTION_KEEP, 0, NULL},
    {"{WORD}\\.", "{INSENTP}", ACTION_SOFT_HYPHENS, 0, NULL},
    {"{PHONE}", NULL, ACTION_NBSP_PARENS, 0, NULL},
    {"{DBLQUOT}", "[A-Za-z0-9$]", ACTION_QUOTES_LEFT, 0, NULL},
    {"{DBLQUOT}", NULL, ACTION_QUOTES_RIGHT, 0, NULL},
    {"\\u007F", NULL, ACTION_SKIP, 0, NULL},
    {"{LESSTHAN}", NULL, ACTION_REPLACE, 0, "<"},
    {"{GREATERTHAN}", NULL, ACTION_REPLACE, 0, ">"},
    {"{SMILEY}", "[^A-Za-z0-9]", ACTION_PARENS, 0, NULL},
    {"{ASIANSMILEY}", NULL, ACTION_PARENS, 0, NULL},
    {"\\{", NULL, ACTION_REPLACE, 0, "-LCB-"},
    {"\\}", NULL, ACTION_REPLACE, 0, "-RCB-"},
    {"\\[", NULL, ACTION_REPLACE, 0, "-LSB-"},
    {"\\]", NULL, ACTION_REPLACE, 0, "-RSB-"},
    {"\\(", NULL, ACTION_REPLACE, 0, "-LRB-"},
    {"\\)", NULL, ACTION_REPLACE, 0, "-RRB-"},
    {"{HYPHENS}", NULL, ACTION_HYPHENS, 0, NULL},
    {"{LDOTS}", NULL, ACTION_REPLACE, 0, "..."},
    {"{SPACEDLDOTS}", NULL, ACTION_REPLACE, 0, "..."},
    {"{FNMARKS}", NULL, ACTION_KEEP, 0, NULL},
    {"{ASTS}", NULL, ACTION_KEEP, 0, NULL},
    {"{INSENTP}", NULL, ACTION_KEEP, 0, NULL},
    {"[?!]+", NULL, ACTION_KEEP, 0, NULL},
    {"[.\\u00A1\\u00BF\\u037E\\u0589\\u061F\\u06D4\\u0700-\\u0702\\u07FA\\u3002]", NULL,
     ACTION_KEEP, 0, NULL},
    {"=", NULL, ACTION_KEEP, 0, NULL},
    {"\\/", NULL, ACTION_KEEP, 0, NULL},
    {"{HTHING}\\.", "{INSENTP}", ACTION_SOFT_HYPHENS, 0, NULL},
    {"{HTHING}", NULL, ACTION_SOFT_HYPHENS, 0, NULL},
    {"{THING}\\.", "{INSENTP}", ACTION_SOFT_HYPHENS, 0, NULL},
    {"{THING}", NULL, ACTION_SOFT_HYPHENS, 0, NULL},
    {"{THINGA}\\.", "{INSENTP}", ACTION_AMPERSAND, 0, NULL},
    {"{THINGA}", NULL, ACTION_AMPERSAND, 0, NULL},
    {"'", "[A-Za-z][^ \\t\\n\\r\\u00A0]", ACTION_QUOTES_LEFT, 0, NULL},
    {"{REDAUX}", NULL, ACTION_QUOTES_RIGHT, 0, NULL},
    {"{SREDAUX}", NULL, ACTION_QUOTES_RIGHT, 0, NULL},
    {"{QUOTES}", NULL, ACTION_QUOTES_RIGHT, 0, NULL},
    {"{FAKEDUCKFEET}", NULL, ACTION_KEEP, 0, NULL},
    {"{MISCSYMBOL}", NULL, ACTION_KEEP, 0, NULL},
    {"&nbsp;", NULL, ACTION_SKIP, 0, NULL},
    {"{SPACES}", NULL, ACTION_SKIP, 0, NULL},
    {"{NEWLINE}", NULL, ACTION_SKIP, 0, NULL},
    {".", NULL, ACTION_DELETE, 0, NULL},
};

#define N_MACROS ((int64_t)(sizeof MACROS / sizeof MACROS[0]))
#define N_RULES ((int64_t)(sizeof RULES / sizeof RULES[0]))

/* ------------------------------------------------------------------------------------ */
/* Character classes                                                                    */

enum {
    CLASS_LETTER = 1, /* [:letter:]: Java Character.isLetter */
    CLASS_DIGIT = 2,  /* [:digit:]: Java Character.isDigit */
    CLASS_UPPER = 4,  /* [:uppercase:]: Java Character.isUpperCase */
    CLASS_ANY = 8     /* [^] */
};

typedef struct char_class {
    int64_t first, count; /* its ranges: lexer.ranges[first .. first + count) */
    unsigned named;       /* CLASS_* sets also included */
    int negated;
    uint64_t ascii[2];    /* membership of code points below 128, precomputed */
} char_class;

/* Decimal digits (general category Nd) of the Basic Multilingual Plane, Unicode 14. */
static const uint32_t DIGIT_RANGES[][2] = {
    {0x0030, 0x0039}, {0x0660, 0x0669}, {0x06F0, 0x06F9}, {0x07C0, 0x07C9}, {0x0966, 0x096F},
    {0x09E6, 0x09EF}, {0x0A66, 0x0A6F}, {0x0AE6, 0x0AEF}, {0x0B66, 0x0B6F}, {0x0BE6, 0x0BEF},
    {0x0C66, 0x0C6F}, {0x0CE6, 0x0CEF}, {0x0D66, 0x0D6F}, {0x0DE6, 0x0DEF}, {0x0E50, 0x0E59},
    {0x0ED0, 0x0ED9}, {0x0F20, 0x0F29}, {0x1040, 0x1049}, {0x1090, 0x1099}, {0x17E0, 0x17E9},
    {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19D9}, {0x1A80, 0x1A89}, {0x1A90, 0x1A99},
    {0x1B50, 0x1B59}, {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59}, {0xA620, 0xA629},
    {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59},
    {0xABF0, 0xABF9}, {0xFF10, 0xFF19}};

/* Letters and digits of today's Unicode that the scanner of CoreNLP 3.4.1 does not know
 * (its classes were generated from an older Unicode): found by running every BMP code
 * point through the jar. They are untokenizable there, so they are deleted here too. */
static const uint32_t NOT_IN_JAVA_RANGES[][2] = {
    {0x037F, 0x037F}, {0x0528, 0x052F}, {0x0560, 0x0560}, {0x0588, 0x0588}, {0x05EF, 0x05EF},
    {0x0860, 0x086A}, {0x0870, 0x0887}, {0x0889, 0x088E}, {0x08A1, 0x08A1}, {0x08AD, 0x08C9},
    {0x0978, 0x0978}, {0x0980, 0x0980}, {0x09FC, 0x09FC}, {0x0AF9, 0x0AF9}, {0x0C34, 0x0C34},
    {0x0C5A, 0x0C5A}, {0x0C5D, 0x0C5D}, {0x0C80, 0x0C80}, {0x0CDD, 0x0CDD}, {0x0D04, 0x0D04},
    {0x0D54, 0x0D56}, {0x0D5F, 0x0D5F}, {0x0DE6, 0x0DEF}, {0x0E86, 0x0E86}, {0x0E89, 0x0E89},
    {0x0E8C, 0x0E8C}, {0x0E8E, 0x0E93}, {0x0E98, 0x0E98}, {0x0EA0, 0x0EA0}, {0x0EA8, 0x0EA9},
    {0x0EAC, 0x0EAC}, {0x13F5, 0x13F5}, {0x13F8, 0x13FD}, {0x16F1, 0x16F8}, {0x170D, 0x170D},
    {0x171F, 0x171F}, {0x1878, 0x1878}, {0x191D, 0x191E}, {0x19B0, 0x19C0},
    {0x19C8, 0x19C9}, {0x1B4C, 0x1B4C}, {0x1C80, 0x1C8A}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1CF2, 0x1CF3}, {0x1CFA, 0x1CFA}, {0x2C2F, 0x2C2F}, {0x2C5F, 0x2C5F}, {0x312E, 0x312F},
    {0x31BB, 0x31BF}, {0x4DB6, 0x4DBF}, {0x9FCD, 0x9FFF}, {0xA698, 0xA69D}, {0xA78F, 0xA78F},
    {0xA794, 0xA79F}, {0xA7AB, 0xA7CD}, {0xA7D0, 0xA7D1}, {0xA7D3, 0xA7D3}, {0xA7D5, 0xA7DC},
    {0xA7F2, 0xA7F7}, {0xA8FD, 0xA8FE}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9FE}, {0xAA7E, 0xAA7F},
    {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABBF}};

static int in_ranges(const uint32_t (*ranges)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) { /* first range ending at or after cp */
        size_t mid = lo + (hi - lo) / 2;
        if (ranges[mid][1] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ranges[lo][0] <= cp;
}

static int not_in_java(uint32_t cp) {
    return in_ranges(NOT_IN_JAVA_RANGES, sizeof NOT_IN_JAVA_RANGES / sizeof NOT_IN_JAVA_RANGES[0], cp);
}

/* Java 1.4-era JFlex scans UTF-16 code units: a character outside the BMP is two
 * surrogates, neither a letter nor a digit. */
static int java_is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    if (cp == 0x1885 || cp == 0x1886) return 1; /* letters then, combining marks since Unicode 9 */
    return cp <= 0xFFFF && (mmt_unicode_props(cp) & MMT_UNI_FAST_LETTER) && !not_in_java(cp);
}

static int java_is_digit(uint32_t cp) {
    if (not_in_java(cp)) return 0;
    for (size_t i = 0; i < sizeof DIGIT_RANGES / sizeof DIGIT_RANGES[0]; i++)
        if (cp >= DIGIT_RANGES[i][0] && cp <= DIGIT_RANGES[i][1]) return 1;
    return 0;
}

/* Upper-case letters without a lower-case mapping (Lu all the same), and titlecase letters
 * (which have one but are not upper case). */
static const uint32_t UPPER_WITHOUT_LOWER[][2] = {
    {0x03D2, 0x03D4}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210B, 0x210D}, {0x2110, 0x2112},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2128, 0x2128}, {0x212C, 0x212D},
    {0x2130, 0x2131}, {0x2133, 0x2133}, {0x213E, 0x213F}, {0x2145, 0x2145}};
static const uint32_t TITLECASE[][2] = {
    {0x01C5, 0x01C5}, {0x01C8, 0x01C8}, {0x01CB, 0x01CB}, {0x01F2, 0x01F2}, {0x1F88, 0x1F8F},
    {0x1F98, 0x1F9F}, {0x1FA8, 0x1FAF}, {0x1FBC, 0x1FBC}, {0x1FCC, 0x1FCC}, {0x1FFC, 0x1FFC}};

/* Java's isUpperCase (Lu or Other_Uppercase) as the jar's tables have it: a character with a
 * lower-case mapping, less titlecase letters and the Cherokee letters (mapped only since
 * Unicode 8), plus the few upper-case letters that have no mapping. Only used to decide
 * whether a period after an abbreviation is repeated as a token of its own. */
static int java_is_upper(uint32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z';
    if (cp > 0xFFFF || not_in_java(cp) || (cp >= 0x13A0 && cp <= 0x13F5) ||
        in_ranges(TITLECASE, sizeof TITLECASE / sizeof TITLECASE[0], cp))
        return 0;
    if (in_ranges(UPPER_WITHOUT_LOWER, sizeof UPPER_WITHOUT_LOWER / sizeof UPPER_WITHOUT_LOWER[0], cp)) return 1;
    uint32_t lower[3];
    int n = mmt_unicode_lower_char(cp, MMT_UNICODE_SLOW, lower);
    return n != 1 || lower[0] != cp;
}

/* ------------------------------------------------------------------------------------ */
/* The compiled scanner                                                                 */

typedef enum node_kind {
    NODE_EMPTY,
    NODE_CLASS,  /* one character of class a */
    NODE_CAT,    /* a then b */
    NODE_ALT,    /* a or b */
    NODE_STAR,   /* a* */
    NODE_PLUS,   /* a+ */
    NODE_OPT,    /* a? */
    NODE_REPEAT  /* a{min,max} */
} node_kind;

typedef struct node {
    node_kind kind;
    int32_t a, b;
    int32_t min, max;
} node;

typedef enum state_kind { STATE_CHAR, STATE_SPLIT, STATE_ACCEPT } state_kind;

typedef struct nfa_state {
    state_kind kind;
    int32_t cls;       /* STATE_CHAR */
    int32_t out, out1; /* next states (out1: second branch of a split, -1 if none) */
    int32_t rule;      /* STATE_ACCEPT */
} nfa_state;

/* Per rule: the start of r1r2 (to compete for the longest match), and of r1 and r2 alone
 * (to find where the token ends inside a match with trailing context). */
typedef struct rule_nfa {
    int32_t whole, token, trailing;
} rule_nfa;

typedef struct lexer {
    uint32_t (*ranges)[2]; /* owned */
    int64_t n_ranges, cap_ranges;
    char_class *classes; /* owned */
    int64_t n_classes, cap_classes;
    node *nodes; /* owned; parse trees, kept until the NFA is built */
    int64_t n_nodes, cap_nodes;
    int32_t macro_tree[N_MACROS]; /* each macro is parsed once; its tree is shared (-1: not yet) */
    int32_t literal_class[128];   /* class of each ASCII literal (-1: not made yet) */
    nfa_state *states; /* owned */
    int64_t n_states, cap_states;
    rule_nfa rules[N_RULES];
    int32_t starts[N_RULES]; /* rules[i].whole, for the simulation */
    int32_t *start_list; /* the states reachable from every rule's start without input (owned) */
    int64_t n_start_list;
    /* After an ASCII first character: the states reached from start_list (owned, made on
     * first use; most tokens start with ASCII, and this skips the widest step). */
    int32_t *after_first[128];
    int64_t n_after_first[128];
    /* Simulation scratch (owned), sized to n_states. */
    int32_t *list_a, *list_b, *stack;
    uint32_t *mark;
    uint32_t generation;
    int depth; /* macro nesting while parsing */
} lexer;

static void lexer_free(lexer *lx) {
    mmt_free(lx->ranges);
    mmt_free(lx->classes);
    mmt_free(lx->nodes);
    mmt_free(lx->states);
    mmt_free(lx->start_list);
    for (int c = 0; c < 128; c++) mmt_free(lx->after_first[c]);
    mmt_free(lx->list_a);
    mmt_free(lx->list_b);
    mmt_free(lx->stack);
    mmt_free(lx->mark);
}

static int class_has(const lexer *lx, int32_t index, uint32_t cp) {
    const char_class *k = &lx->classes[index];
    if (cp < 128) return (int)((k->ascii[cp >> 6] >> (cp & 63)) & 1);
    int in = (k->named & CLASS_ANY) != 0;
    for (int64_t i = 0; !in && i < k->count; i++) {
        const uint32_t *r = lx->ranges[k->first + i];
        in = cp >= r[0] && cp <= r[1];
    }
    if (!in && (k->named & CLASS_LETTER)) in = java_is_letter(cp);
    if (!in && (k->named & CLASS_DIGIT)) in = java_is_digit(cp);
    if (!in && (k->named & CLASS_UPPER)) in = java_is_upper(cp);
    return in != k->negated;
}

/* ---- parsing patterns into trees ---- */

typedef struct parser {
    lexer *lx;
    const char *s;       /* cursor */
    const char *pattern; /* for messages */
} parser;

static mmt_status bad_pattern(const parser *p, const char *what) {
    return mmt_fail(MMT_STATUS_INTERNAL, "ptb tokenizer: pattern \"%.60s\": %s at offset %d",
                    p->pattern, what, (int)(p->s - p->pattern));
}

static mmt_status add_node(lexer *lx, node_kind kind, int32_t a, int32_t b, int32_t *out) {
    MMT_TRY(mmt_grow((void **)&lx->nodes, &lx->cap_nodes, lx->n_nodes + 1, sizeof *lx->nodes));
    lx->nodes[lx->n_nodes] = (node){kind, a, b, 0, 0};
    *out = (int32_t)lx->n_nodes++;
    return MMT_OK;
}

static mmt_status add_range(lexer *lx, uint32_t lo, uint32_t hi) {
    MMT_TRY(mmt_grow((void **)&lx->ranges, &lx->cap_ranges, lx->n_ranges + 1, sizeof *lx->ranges));
    lx->ranges[lx->n_ranges][0] = lo;
    lx->ranges[lx->n_ranges][1] = hi;
    lx->n_ranges++;
    return MMT_OK;
}

/* Opens a class whose ranges will be those added until class_close. */
static mmt_status class_open(lexer *lx, int32_t *out) {
    MMT_TRY(mmt_grow((void **)&lx->classes, &lx->cap_classes, lx->n_classes + 1,
                     sizeof *lx->classes));
    memset(&lx->classes[lx->n_classes], 0, sizeof lx->classes[0]);
    lx->classes[lx->n_classes].first = lx->n_ranges;
    *out = (int32_t)lx->n_classes++;
    return MMT_OK;
}

/* Ends the class opened as index: counts its ranges and precomputes its ASCII members. */
static void class_close(lexer *lx, int32_t index) {
    char_class *k = &lx->classes[index];
    k->count = lx->n_ranges - k->first;
    uint64_t bits[2] = {0, 0};
    for (int64_t i = 0; i < k->count; i++)
        for (uint32_t c = lx->ranges[k->first + i][0]; c <= lx->ranges[k->first + i][1] && c < 128; c++)
            bits[c >> 6] |= UINT64_C(1) << (c & 63);
    for (uint32_t c = 0; k->named && c < 128; c++) {
        int in = (k->named & CLASS_ANY) || ((k->named & CLASS_LETTER) && java_is_letter(c)) ||
                 ((k->named & CLASS_DIGIT) && java_is_digit(c)) || ((k->named & CLASS_UPPER) && java_is_upper(c));
        if (in) bits[c >> 6] |= UINT64_C(1) << (c & 63);
    }
    k->ascii[0] = k->negated ? ~bits[0] : bits[0];
    k->ascii[1] = k->negated ? ~bits[1] : bits[1];
}

/* One character of pattern text: a \uXXXX or \c escape, or a UTF-8 sequence. */
static mmt_status parse_char(parser *p, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)p->s;
    if (s[0] == '\\' && s[1] == 'u') {
        uint32_t v = 0;
        for (int i = 2; i < 6; i++) {
            int c = s[i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) return bad_pattern(p, "bad \\u escape");
            v = v * 16 + (uint32_t)d;
        }
        p->s += 6;
        *cp = v;
        return MMT_OK;
    }
    if (s[0] == '\\') {
        if (!s[1]) return bad_pattern(p, "trailing backslash");
        char c = (char)s[1];
        *cp = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c == 'f' ? '\f' : (uint32_t)s[1];
        p->s += 2;
        return MMT_OK;
    }
    size_t bad = 0;
    int len = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    if (mmt_utf8_decode(p->s, (size_t)len, cp, &bad) != 1) return bad_pattern(p, "bad UTF-8");
    p->s += len;
    return MMT_OK;
}

static const struct {
    const char *name;
    unsigned bit;
} NAMED_CLASSES[] = {
    {"[:letter:]", CLASS_LETTER}, {"[:digit:]", CLASS_DIGIT}, {"[:uppercase:]", CLASS_UPPER}};

/* [:letter:] and the like, alone or inside [...]; returns its bit (0 if none) and skips it. */
static unsigned parse_named_class(parser *p) {
    for (size_t i = 0; i < sizeof NAMED_CLASSES / sizeof NAMED_CLASSES[0]; i++) {
        size_t n = strlen(NAMED_CLASSES[i].name);
        if (strncmp(p->s, NAMED_CLASSES[i].name, n) == 0) {
            p->s += n;
            return NAMED_CLASSES[i].bit;
        }
    }
    return 0;
}

static mmt_status parse_class(parser *p, int32_t *out) {
    lexer *lx = p->lx;
    int32_t k;
    MMT_TRY(class_open(lx, &k));
    unsigned alone = parse_named_class(p);
    if (alone) {
        lx->classes[k].named = alone;
        class_close(lx, k);
        return add_node(lx, NODE_CLASS, k, 0, out);
    }
    p->s++; /* [ */
    if (*p->s == '^') {
        lx->classes[k].negated = 1;
        p->s++;
    }
    if (*p->s == ']' && lx->classes[k].negated) { /* [^]: any character */
        lx->classes[k].negated = 0;
        lx->classes[k].named = CLASS_ANY;
    }
    while (*p->s != ']') {
        if (!*p->s) return bad_pattern(p, "unterminated class");
        unsigned named = parse_named_class(p);
        if (named) {
            lx->classes[k].named |= named;
            continue;
        }
        uint32_t lo, hi;
        MMT_TRY(parse_char(p, &lo));
        hi = lo;
        if (p->s[0] == '-' && p->s[1] != ']') {
            p->s++;
            MMT_TRY(parse_char(p, &hi));
        }
        MMT_TRY(add_range(lx, lo, hi));
    }
    p->s++; /* ] */
    class_close(lx, k);
    return add_node(lx, NODE_CLASS, k, 0, out);
}

/* A literal character. Under JFlex %caseless a letter also matches every character with the
 * same simple upper or lower case: both ASCII cases, and for i, k and s also U+0130 and
 * U+0131, the Kelvin sign U+212A and the long s U+017F. The classes of ASCII literals are
 * made once and shared. */
static mmt_status literal_node(lexer *lx, uint32_t cp, int32_t *out) {
    int32_t k = cp < 128 ? lx->literal_class[cp] : -1;
    if (k < 0) {
        MMT_TRY(class_open(lx, &k));
        MMT_TRY(add_range(lx, cp, cp));
        if (cp < 128 && ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')) MMT_TRY(add_range(lx, cp ^ 0x20, cp ^ 0x20));
        uint32_t lower = cp | 0x20;
        if (cp < 128 && lower == 'i') {
            MMT_TRY(add_range(lx, 0x130, 0x131));
        } else if (cp < 128 && lower == 'k') {
            MMT_TRY(add_range(lx, 0x212A, 0x212A));
        } else if (cp < 128 && lower == 's') {
            MMT_TRY(add_range(lx, 0x17F, 0x17F));
        }
        class_close(lx, k);
        if (cp < 128) lx->literal_class[cp] = k;
    }
    return add_node(lx, NODE_CLASS, k, 0, out);
}

static mmt_status parse_alternation(parser *p, int32_t *out);

static mmt_status parse_macro(parser *p, int32_t *out) {
    const char *end = strchr(p->s, '}');
    if (!end) return bad_pattern(p, "unterminated macro name");
    size_t n = (size_t)(end - p->s - 1);
    for (int64_t i = 0; i < N_MACROS; i++) {
        if (strlen(MACROS[i].name) != n || strncmp(MACROS[i].name, p->s + 1, n) != 0) continue;
        p->s = end + 1;
        if (p->lx->macro_tree[i] >= 0) { /* trees are only read when building: share it */
            *out = p->lx->macro_tree[i];
            return MMT_OK;
        }
        if (p->lx->depth > 32) return bad_pattern(p, "macros nested too deeply");
        parser sub = {p->lx, MACROS[i].pattern, MACROS[i].pattern};
        p->lx->depth++;
        mmt_status s = parse_alternation(&sub, out);
        p->lx->depth--;
        if (s == MMT_OK && *sub.s) s = bad_pattern(&sub, "unbalanced parenthesis");
        if (s == MMT_OK) p->lx->macro_tree[i] = *out;
        return s;
    }
    return bad_pattern(p, "unknown macro");
}

static mmt_status parse_atom(parser *p, int32_t *out) {
    lexer *lx = p->lx;
    char c = *p->s;
    if (c == '(') {
        p->s++;
        MMT_TRY(parse_alternation(p, out));
        if (*p->s != ')') return bad_pattern(p, "missing )");
        p->s++;
        return MMT_OK;
    }
    if (c == '[') return parse_class(p, out);
    if (c == '{') return parse_macro(p, out);
    if (c == '.') { /* anything but a newline */
        p->s++;
        int32_t k;
        MMT_TRY(class_open(lx, &k));
        lx->classes[k].negated = 1;
        MMT_TRY(add_range(lx, '\n', '\n'));
        class_close(lx, k);
        return add_node(lx, NODE_CLASS, k, 0, out);
    }
    uint32_t cp;
    MMT_TRY(parse_char(p, &cp));
    return literal_node(lx, cp, out);
}

static mmt_status parse_repeat(parser *p, int32_t *out) {
    int32_t a = -1;
    MMT_TRY(parse_atom(p, &a));
    for (;;) {
        char c = *p->s;
        node_kind kind;
        if (c == '*') kind = NODE_STAR;
        else if (c == '+') kind = NODE_PLUS;
        else if (c == '?') kind = NODE_OPT;
        else if (c == '{' && p->s[1] >= '0' && p->s[1] <= '9') kind = NODE_REPEAT;
        else break;
        int32_t min = 0, max = 0;
        if (kind == NODE_REPEAT) {
            p->s++;
            while (*p->s >= '0' && *p->s <= '9') min = min * 10 + (*p->s++ - '0');
            max = min;
            if (*p->s == ',') {
                p->s++;
                max = 0;
                while (*p->s >= '0' && *p->s <= '9') max = max * 10 + (*p->s++ - '0');
            }
            if (*p->s != '}' || max < min || max > 16) return bad_pattern(p, "bad {m,n}");
        }
        p->s++;
        MMT_TRY(add_node(p->lx, kind, a, 0, &a));
        p->lx->nodes[a].min = min;
        p->lx->nodes[a].max = max;
    }
    *out = a;
    return MMT_OK;
}

static mmt_status parse_concatenation(parser *p, int32_t *out) {
    int32_t result = -1;
    while (*p->s && *p->s != '|' && *p->s != ')') {
        int32_t r = -1;
        MMT_TRY(parse_repeat(p, &r));
        if (result < 0) result = r;
        else MMT_TRY(add_node(p->lx, NODE_CAT, result, r, &result));
    }
    if (result < 0) MMT_TRY(add_node(p->lx, NODE_EMPTY, 0, 0, &result));
    *out = result;
    return MMT_OK;
}

static mmt_status parse_alternation(parser *p, int32_t *out) {
    int32_t left = -1;
    MMT_TRY(parse_concatenation(p, &left));
    while (*p->s == '|') {
        p->s++;
        int32_t right = -1;
        MMT_TRY(parse_concatenation(p, &right));
        MMT_TRY(add_node(p->lx, NODE_ALT, left, right, &left));
    }
    *out = left;
    return MMT_OK;
}

static mmt_status parse_pattern(lexer *lx, const char *pattern, int32_t *out) {
    parser p = {lx, pattern, pattern};
    MMT_TRY(parse_alternation(&p, out));
    if (*p.s) return bad_pattern(&p, "unbalanced parenthesis");
    return MMT_OK;
}

/* ---- building the NFA (Thompson, back to front: each piece is built before what leads to it) ---- */

static mmt_status add_state(lexer *lx, state_kind kind, int32_t cls, int32_t out, int32_t out1,
                            int32_t *index) {
    MMT_TRY(mmt_grow((void **)&lx->states, &lx->cap_states, lx->n_states + 1, sizeof *lx->states));
    lx->states[lx->n_states] = (nfa_state){kind, cls, out, out1, -1};
    *index = (int32_t)lx->n_states++;
    return MMT_OK;
}

/* Builds tree `n` so that it continues to state `next`; *start gets its entry state. */
static mmt_status build(lexer *lx, int32_t n, int32_t next, int32_t *start) {
    node nd = lx->nodes[n];
    int32_t s, a, b;
    switch (nd.kind) {
    case NODE_EMPTY: *start = next; return MMT_OK;
    case NODE_CLASS: return add_state(lx, STATE_CHAR, nd.a, next, -1, start);
    case NODE_CAT:
        MMT_TRY(build(lx, nd.b, next, &b));
        return build(lx, nd.a, b, start);
    case NODE_ALT:
        MMT_TRY(build(lx, nd.a, next, &a));
        MMT_TRY(build(lx, nd.b, next, &b));
        return add_state(lx, STATE_SPLIT, -1, a, b, start);
    case NODE_OPT:
        MMT_TRY(build(lx, nd.a, next, &a));
        return add_state(lx, STATE_SPLIT, -1, a, next, start);
    case NODE_STAR:
        MMT_TRY(add_state(lx, STATE_SPLIT, -1, -1, next, &s));
        MMT_TRY(build(lx, nd.a, s, &a));
        lx->states[s].out = a;
        *start = s;
        return MMT_OK;
    case NODE_PLUS:
        MMT_TRY(add_state(lx, STATE_SPLIT, -1, -1, next, &s));
        MMT_TRY(build(lx, nd.a, s, &a));
        lx->states[s].out = a;
        *start = a;
        return MMT_OK;
    case NODE_REPEAT: {
        /* a{m,n} = a^m (a (a (...)?)?)?: every optional copy may leave for `next`. */
        int32_t cur = next;
        for (int32_t i = 0; i < nd.max - nd.min; i++) {
            MMT_TRY(build(lx, nd.a, cur, &a));
            MMT_TRY(add_state(lx, STATE_SPLIT, -1, a, next, &cur));
        }
        for (int32_t i = 0; i < nd.min; i++) {
            MMT_TRY(build(lx, nd.a, cur, &a));
            cur = a;
        }
        *start = cur;
        return MMT_OK;
    }
    }
    return mmt_fail(MMT_STATUS_INTERNAL, "ptb tokenizer: bad node kind");
}

/* Builds `pattern` (followed by `trailing` when not NULL) ending in an accept state for rule. */
static mmt_status build_pattern(lexer *lx, const char *pattern, const char *trailing, int32_t rule,
                                int32_t *start) {
    int32_t tree, accept;
    MMT_TRY(parse_pattern(lx, pattern, &tree));
    if (trailing) {
        int32_t trail;
        MMT_TRY(parse_pattern(lx, trailing, &trail));
        MMT_TRY(add_node(lx, NODE_CAT, tree, trail, &tree));
    }
    MMT_TRY(add_state(lx, STATE_ACCEPT, -1, -1, -1, &accept));
    lx->states[accept].rule = rule;
    return build(lx, tree, accept, start);
}

static void add_closure(lexer *lx, int32_t *list, int64_t *n, int32_t s);

static mmt_status lexer_init(lexer *lx) {
    memset(lx, 0, sizeof *lx);
    for (int64_t i = 0; i < N_MACROS; i++) lx->macro_tree[i] = -1;
    for (int i = 0; i < 128; i++) lx->literal_class[i] = -1;
    for (int64_t r = 0; r < N_RULES; r++) {
        const rule_def *d = &RULES[r];
        rule_nfa *nfa = &lx->rules[r];
        MMT_TRY(build_pattern(lx, d->pattern, d->trailing, (int32_t)r, &nfa->whole));
        nfa->token = nfa->trailing = -1;
        if (d->trailing) {
            MMT_TRY(build_pattern(lx, d->pattern, NULL, (int32_t)r, &nfa->token));
            MMT_TRY(build_pattern(lx, d->trailing, NULL, (int32_t)r, &nfa->trailing));
        }
        lx->starts[r] = nfa->whole;
    }
    mmt_free(lx->nodes); /* trees are only needed while building */
    lx->nodes = NULL;
    lx->n_nodes = lx->cap_nodes = 0;
    size_t n = (size_t)lx->n_states;
    lx->list_a = mmt_malloc(n * sizeof *lx->list_a);
    lx->list_b = mmt_malloc(n * sizeof *lx->list_b);
    lx->stack = mmt_malloc((2 * n + 2) * sizeof *lx->stack); /* a state is pushed by at most two others */
    lx->mark = mmt_calloc(n, sizeof *lx->mark);
    lx->start_list = mmt_malloc(n * sizeof *lx->start_list);
    if (!lx->list_a || !lx->list_b || !lx->stack || !lx->mark || !lx->start_list) return MMT_STATUS_OUT_OF_MEMORY;
    lx->generation = 1;
    for (int64_t r = 0; r < N_RULES; r++) add_closure(lx, lx->start_list, &lx->n_start_list, lx->starts[r]);
    for (int64_t i = 0; i < lx->n_start_list; i++) /* nfa_run's shortcut relies on this */
        if (lx->states[lx->start_list[i]].kind == STATE_ACCEPT)
            return mmt_fail(MMT_STATUS_INTERNAL, "ptb tokenizer: rule %d matches the empty string",
                            lx->states[lx->start_list[i]].rule);
    return MMT_OK;
}

/* ---- simulation ---- */

/* Adds state s and everything reachable from it without input to list (once each). */
static void add_closure(lexer *lx, int32_t *list, int64_t *n, int32_t s) {
    int64_t top = 0;
    lx->stack[top++] = s;
    while (top > 0) {
        int32_t t = lx->stack[--top];
        if (t < 0 || lx->mark[t] == lx->generation) continue;
        lx->mark[t] = lx->generation;
        const nfa_state *st = &lx->states[t];
        if (st->kind == STATE_SPLIT) {
            lx->stack[top++] = st->out1;
            lx->stack[top++] = st->out;
        } else {
            list[(*n)++] = t;
        }
    }
}

static void next_generation(lexer *lx) {
    if (++lx->generation == 0) { /* wrapped: forget every mark */
        memset(lx->mark, 0, (size_t)lx->n_states * sizeof *lx->mark);
        lx->generation = 1;
    }
}

/* Runs the NFA entered at starts[0..n_starts) (NULL: every rule, from lx->start_list) over
 * text[pos..n). *best_len and *best_rule get the longest match (ties: the lowest rule), or
 * -1. If ends is not NULL, ends[k] = 1 for every length k at which some accept state is
 * reached (ends has room for n - pos + 1). */
static void nfa_run(lexer *lx, const int32_t *starts, int64_t n_starts, const uint32_t *text,
                    int64_t n, int64_t pos, int64_t *best_len, int32_t *best_rule, uint8_t *ends) {
    int32_t *cur = lx->list_a, *nxt = lx->list_b;
    int64_t n_cur = 0;
    *best_len = -1;
    *best_rule = -1;
    next_generation(lx);
    int64_t i = pos;
    if (!starts && pos < n && text[pos] < 128 && lx->after_first[text[pos]]) {
        /* No rule matches the empty string, so nothing accepts before the first character. */
        n_cur = lx->n_after_first[text[pos]];
        memcpy(cur, lx->after_first[text[pos]], (size_t)n_cur * sizeof *cur);
        i = pos + 1;
    } else if (!starts) {
        memcpy(cur, lx->start_list, (size_t)lx->n_start_list * sizeof *cur);
        n_cur = lx->n_start_list;
    }
    for (int64_t j = 0; starts && j < n_starts; j++) add_closure(lx, cur, &n_cur, starts[j]);
    for (;; i++) {
        for (int64_t j = 0; j < n_cur; j++) {
            const nfa_state *st = &lx->states[cur[j]];
            if (st->kind != STATE_ACCEPT) continue;
            if (ends) ends[i - pos] = 1;
            if (i - pos > *best_len || (i - pos == *best_len && st->rule < *best_rule)) {
                *best_len = i - pos;
                *best_rule = st->rule;
            }
        }
        if (i >= n || n_cur == 0) break;
        int64_t n_next = 0;
        next_generation(lx);
        for (int64_t j = 0; j < n_cur; j++) {
            const nfa_state *st = &lx->states[cur[j]];
            if (st->kind == STATE_CHAR && class_has(lx, st->cls, text[i]))
                add_closure(lx, nxt, &n_next, st->out);
        }
        if (!starts && i == pos && text[i] < 128 && !lx->after_first[text[i]]) {
            int32_t *saved = mmt_malloc((size_t)(n_next ? n_next : 1) * sizeof *saved);
            if (saved) { /* without memory the next token just takes the long way again */
                memcpy(saved, nxt, (size_t)n_next * sizeof *saved);
                lx->after_first[text[i]] = saved;
                lx->n_after_first[text[i]] = n_next;
            }
        }
        int32_t *t = cur;
        cur = nxt;
        nxt = t;
        n_cur = n_next;
    }
}

/* For a match of rule r of `total` characters at pos that has trailing context: the length
 * of the token, the longest r1 whose remainder is matched exactly by r2. */
static int64_t token_length(lexer *lx, int32_t r, const uint32_t *text, int64_t n, int64_t pos,
                            int64_t total, uint8_t *ends, uint8_t *ends2) {
    memset(ends, 0, (size_t)(total + 1));
    int64_t len;
    int32_t rule;
    nfa_run(lx, &lx->rules[r].token, 1, text, pos + total, pos, &len, &rule, ends);
    for (int64_t k = total; k >= 0; k--) {
        if (!ends[k]) continue;
        memset(ends2, 0, (size_t)(total - k + 1));
        nfa_run(lx, &lx->rules[r].trailing, 1, text, pos + total, pos + k, &len, &rule, ends2);
        if (ends2[total - k]) return k;
    }
    return total; /* not reached for a well-formed match */
}

/* ------------------------------------------------------------------------------------ */
/* Actions                                                                              */

/* A growable buffer of code points. */
typedef struct cp_buf {
    uint32_t *data; /* owned */
    int64_t n, cap;
} cp_buf;

static mmt_status cp_push(cp_buf *b, uint32_t c) {
    MMT_TRY(mmt_grow((void **)&b->data, &b->cap, b->n + 1, sizeof *b->data));
    b->data[b->n++] = c;
    return MMT_OK;
}

static mmt_status cp_push_ascii(cp_buf *b, const char *s) {
    for (; *s; s++) MMT_TRY(cp_push(b, (unsigned char)*s));
    return MMT_OK;
}

static int starts_with(const uint32_t *t, int64_t n, const char *ascii) {
    int64_t i = 0;
    for (; ascii[i]; i++)
        if (i >= n || t[i] != (unsigned char)ascii[i]) return 0;
    return 1;
}

/* pycocoevalcap's tokenizer runs with PTB3 escaping: LaTeX quotes. ASCII ' and " (and their
 * entities) open or close by the rule's guess; curly and CP1252 quotes by their shape. */
static mmt_status quotes_latex(const uint32_t *t, int64_t n, int left, cp_buf *out) {
    for (int64_t i = 0; i < n;) {
        uint32_t c = t[i];
        if (starts_with(t + i, n - i, "&apos;")) {
            MMT_TRY(cp_push(out, left ? '`' : '\''));
            i += 6;
        } else if (starts_with(t + i, n - i, "&quot;")) {
            MMT_TRY(cp_push_ascii(out, left ? "``" : "''"));
            i += 6;
        } else if (c == '\'') {
            MMT_TRY(cp_push(out, left ? '`' : '\''));
            i++;
        } else if (c == '"') {
            MMT_TRY(cp_push_ascii(out, left ? "``" : "''"));
            i++;
        } else if (c == 0x91 || c == 0x2018 || c == 0x201B || c == 0x2039) {
            MMT_TRY(cp_push(out, '`'));
            i++;
        } else if (c == 0x92 || c == 0x2019 || c == 0x203A) {
            MMT_TRY(cp_push(out, '\''));
            i++;
        } else if (c == 0x93 || c == 0x201C || c == 0xAB) {
            MMT_TRY(cp_push_ascii(out, "``"));
            i++;
        } else if (c == 0x94 || c == 0x201D || c == 0xBB) {
            MMT_TRY(cp_push_ascii(out, "''"));
            i++;
        } else {
            MMT_TRY(cp_push(out, c));
            i++;
        }
    }
    return MMT_OK;
}

/* Appends the token for text t (n code points) as the rule's action makes it. */
static mmt_status apply_action(const rule_def *d, const uint32_t *t, int64_t n, cp_buf *out) {
    switch (d->action) {
    case ACTION_KEEP:
    case ACTION_PUSHBACK:
    case ACTION_PERIOD_AGAIN:
    case ACTION_ACRONYM:
        for (int64_t i = 0; i < n; i++) MMT_TRY(cp_push(out, t[i]));
        return MMT_OK;
    case ACTION_SOFT_HYPHENS: {
        int64_t kept = 0;
        for (int64_t i = 0; i < n; i++)
            if (t[i] != 0xAD) {
                MMT_TRY(cp_push(out, t[i]));
                kept++;
            }
        return kept ? MMT_OK : cp_push(out, '-');
    }
    case ACTION_QUOTES_LEFT: return quotes_latex(t, n, 1, out);
    case ACTION_QUOTES_RIGHT: return quotes_latex(t, n, 0, out);
    case ACTION_REPLACE: {
        size_t bad = 0, len = strlen(d->text);
        uint32_t cps[8];
        int64_t m = mmt_utf8_decode(d->text, len, cps, &bad);
        for (int64_t i = 0; i < m; i++) MMT_TRY(cp_push(out, cps[i]));
        return MMT_OK;
    }
    case ACTION_NBSP:
    case ACTION_NBSP_PARENS:
    case ACTION_PARENS:
        for (int64_t i = 0; i < n; i++) {
            uint32_t c = t[i];
            if (c == ' ' && d->action != ACTION_PARENS) MMT_TRY(cp_push(out, 0xA0));
            else if (c == '(' && d->action != ACTION_NBSP) MMT_TRY(cp_push_ascii(out, "-LRB-"));
            else if (c == ')' && d->action != ACTION_NBSP) MMT_TRY(cp_push_ascii(out, "-RRB-"));
            else MMT_TRY(cp_push(out, c));
        }
        return MMT_OK;
    case ACTION_AMPERSAND:
        for (int64_t i = 0; i < n; i++) {
            MMT_TRY(cp_push(out, t[i]));
            if (starts_with(t + i, n - i, "&amp;")) i += 4;
        }
        return MMT_OK;
    case ACTION_CURRENCY:
        for (int64_t i = 0; i < n; i++) {
            if (t[i] == 0xA2) MMT_TRY(cp_push_ascii(out, "cents"));
            else if (t[i] == 0xA3) MMT_TRY(cp_push(out, '#'));
            else if (t[i] == 0x80 || t[i] == 0xA4 || t[i] == 0x20A0 || t[i] == 0x20AC)
                MMT_TRY(cp_push(out, '$'));
            else MMT_TRY(cp_push(out, t[i]));
        }
        return MMT_OK;
    case ACTION_FRACTION:
        for (int64_t i = 0; i < n; i++) {
            const char *f = t[i] == 0xBC ? "1/4" : t[i] == 0xBD ? "1/2" : t[i] == 0xBE ? "3/4"
                          : t[i] == 0x2153 ? "1/3" : t[i] == 0x2154 ? "2/3" : NULL;
            if (f) MMT_TRY(cp_push_ascii(out, f));
            else MMT_TRY(cp_push(out, t[i]));
        }
        return MMT_OK;
    case ACTION_HYPHENS:
        if (n >= 3 && n <= 4) return cp_push_ascii(out, "--");
        for (int64_t i = 0; i < n; i++) MMT_TRY(cp_push(out, t[i]));
        return MMT_OK;
    case ACTION_SKIP:
    case ACTION_DELETE: return MMT_OK;
    }
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Lines                                                                                */

static int is_line_break(uint32_t c) {
    return c == '\r' || c == 0x0B || c == 0x0C || c == 0x2028 || c == 0x2029;
}

/* The whole input as the Java tokenizer reads it: the lines joined by '\n'. Inside a line
 * '\n' is already a space (pycocoevalcap replaces it); the other characters Java would
 * also break a line at become spaces too, so that lines stay aligned. */
static mmt_status decode_lines(const char *const *lines, int64_t n_lines, uint32_t **text,
                               int64_t *n_text, int64_t *line_start) {
    size_t total = 0;
    for (int64_t i = 0; i < n_lines; i++) total += strlen(lines[i]) + 1;
    uint32_t *t = mmt_malloc((total + 1) * sizeof *t);
    if (!t) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t n = 0;
    for (int64_t i = 0; i < n_lines; i++) {
        size_t len = strlen(lines[i]), bad = 0;
        if (i > 0) t[n++] = '\n';
        line_start[i] = n;
        int64_t m = mmt_utf8_decode(lines[i], len, t + n, &bad);
        if (m < 0) {
            mmt_free(t);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "caption %lld: invalid UTF-8 at byte %zu",
                            (long long)i, bad);
        }
        int64_t astral = 0;
        for (int64_t k = n; k < n + m; k++) {
            if (t[k] == '\n' || is_line_break(t[k])) t[k] = ' ';
            astral += t[k] > 0xFFFF;
        }
        /* Java scans UTF-16: a character beyond the BMP is two surrogates, which rules see
         * (and count) one at a time. Expanded in place from the end: its 4 UTF-8 bytes
         * reserved room for both. */
        for (int64_t k = n + m - 1, to = n + m + astral - 1; to > k; k--) {
            uint32_t c = t[k];
            if (c > 0xFFFF) {
                t[to--] = 0xDC00 + ((c - 0x10000) & 0x3FF);
                t[to--] = 0xD800 + ((c - 0x10000) >> 10);
            } else {
                t[to--] = c;
            }
        }
        n += m + astral;
    }
    line_start[n_lines] = n + 1;
    *text = t;
    *n_text = n;
    return MMT_OK;
}

/* Appends the lowercased token (Java's toLowerCase, final sigma included) as UTF-8. */
static mmt_status emit_token(const cp_buf *tok, int64_t from, cp_buf *scratch, mmt_strbuf *line) {
    int64_t n = tok->n - from;
    if (n <= 0) return MMT_OK;
    scratch->n = 0;
    /* room: the lowercase (up to 3 code points each) in [0, 3n), the code points in [3n, 4n) */
    MMT_TRY(mmt_grow((void **)&scratch->data, &scratch->cap, 4 * n, sizeof *scratch->data));
    /* Surrogate pairs back to code points (Java lowercases whole code points); a lone
     * surrogate is written as '?', as Java's UTF-8 encoder does. */
    uint32_t *cps = scratch->data + 3 * n;
    int64_t n_cps = 0;
    for (int64_t i = from; i < tok->n; i++) {
        uint32_t c = tok->data[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < tok->n && tok->data[i + 1] >= 0xDC00 && tok->data[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (tok->data[i + 1] - 0xDC00);
            i++;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = '?';
        }
        cps[n_cps++] = c;
    }
    int64_t m = mmt_unicode_lower_python(cps, n_cps, scratch->data);
    if (line->len > 0) mmt_strbuf_append(line, " ", 1);
    for (int64_t i = 0; i < m; i++) {
        char u[4];
        int k = mmt_utf8_encode(scratch->data[i], u);
        mmt_strbuf_append(line, u, (size_t)k);
    }
    return line->failed ? MMT_STATUS_OUT_OF_MEMORY : MMT_OK;
}

/* Tokenizes text[start, end) (one line; the text beyond is lookahead only) into *out. */
static mmt_status tokenize_line(lexer *lx, const uint32_t *text, int64_t n, int64_t start,
                                int64_t end, uint8_t *ends, uint8_t *ends2, cp_buf *tok,
                                cp_buf *scratch, char **out) {
    mmt_strbuf line = {0};
    mmt_status s = MMT_OK;
    int64_t pos = start;
    while (s == MMT_OK && pos < end) {
        int64_t total, len;
        int32_t r;
        nfa_run(lx, NULL, 0, text, n, pos, &total, &r, NULL);
        if (total <= 0) { /* cannot happen: "." matches any character but '\n' */
            pos++;
            continue;
        }
        const rule_def *d = &RULES[r];
        len = d->trailing ? token_length(lx, r, text, n, pos, total, ends, ends2) : total;
        int64_t advance = len;
        if (d->action == ACTION_PUSHBACK) advance = len = len - d->arg;
        else if (d->action == ACTION_PERIOD_AGAIN) advance = len - 1;
        else if (d->action == ACTION_ACRONYM) advance = len == 2 ? (len = 1) : len - 1;
        if (pos + len > end) { /* no rule takes a line break into a token; be safe */
            pos++;
            continue;
        }
        tok->n = 0;
        s = apply_action(d, text + pos, len, tok);
        if (s == MMT_OK && d->action != ACTION_SKIP && d->action != ACTION_DELETE)
            s = emit_token(tok, 0, scratch, &line);
        pos += advance;
    }
    if (s == MMT_OK && !line.data) mmt_strbuf_append(&line, "", 0);
    if (s == MMT_OK && line.failed) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s != MMT_OK) {
        mmt_strbuf_free(&line);
        return s;
    }
    *out = line.data;
    return MMT_OK;
}

mmt_status mmt_ptb_tokenize_lines(const char *const *lines, int64_t n_lines, char **out) {
    if (!lines || !out || n_lines < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "ptb tokenizer: no lines given");
    for (int64_t i = 0; i < n_lines; i++) out[i] = NULL;
    for (int64_t i = 0; i < n_lines; i++) {
        if (!lines[i])
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "ptb tokenizer: line %lld is NULL",
                            (long long)i);
    }
    if (n_lines == 0) return MMT_OK;
    lexer lx;
    uint32_t *text = NULL;
    int64_t n_text = 0;
    uint8_t *ends = NULL, *ends2 = NULL;
    cp_buf tok = {0}, scratch = {0};
    int64_t *line_start = mmt_malloc((size_t)(n_lines + 1) * sizeof *line_start);
    mmt_status s = line_start ? lexer_init(&lx) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = decode_lines(lines, n_lines, &text, &n_text, line_start);
    if (s == MMT_OK) {
        ends = mmt_malloc((size_t)n_text + 2);
        ends2 = mmt_malloc((size_t)n_text + 2);
        if (!ends || !ends2) s = MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; s == MMT_OK && i < n_lines; i++)
        s = tokenize_line(&lx, text, n_text, line_start[i], line_start[i + 1] - 1, ends, ends2,
                          &tok, &scratch, &out[i]);
    if (s != MMT_OK)
        for (int64_t i = 0; i < n_lines; i++) {
            mmt_free(out[i]);
            out[i] = NULL;
        }
    if (line_start) lexer_free(&lx);
    mmt_free(line_start);
    mmt_free(text);
    mmt_free(ends);
    mmt_free(ends2);
    mmt_free(tok.data);
    mmt_free(scratch.data);
    return s;
}

mmt_status mmt_ptb_tokenize(const char *text, char **out) {
    if (!out) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "ptb tokenizer: no output given");
    *out = NULL;
    if (!text) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "ptb tokenizer: text is NULL");
    return mmt_ptb_tokenize_lines(&text, 1, out);
}

/* pycocoevalcap/tokenizer/ptbtokenizer.py: PUNCTUATIONS. The bracket tokens are listed in
 * upper case, so the lowercased ones the tokenizer writes (-lrb- ...) are kept. */
static const char *const COCO_PUNCTUATION[] = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-",
                                               "-RCB-", ".", "?", "!", ",", ":", "-", "--",
                                               "...", ";"};

static int is_coco_punctuation(const char *w, size_t n) {
    for (size_t i = 0; i < sizeof COCO_PUNCTUATION / sizeof COCO_PUNCTUATION[0]; i++)
        if (strlen(COCO_PUNCTUATION[i]) == n && memcmp(COCO_PUNCTUATION[i], w, n) == 0) return 1;
    return 0;
}

/* Length of line without trailing white space as Python's str.rstrip() sees it. */
static size_t python_rstrip_length(const char *line) {
    size_t n = strlen(line);
    while (n > 0) {
        size_t start = n - 1;
        while (start > 0 && ((unsigned char)line[start] & 0xC0) == 0x80) start--;
        uint32_t cp;
        size_t bad = 0;
        if (mmt_utf8_decode(line + start, n - start, &cp, &bad) != 1) break;
        if (!(mmt_unicode_props(cp) & MMT_UNI_PY_SPACE)) break;
        n = start;
    }
    return n;
}

mmt_status mmt_ptb_coco_filter(const char *line, char **out) {
    if (!out) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "ptb filter: no output given");
    *out = NULL;
    if (!line) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "ptb filter: line is NULL");
    /* ' '.join(w for w in line.rstrip().split(' ') if w not in PUNCTUATIONS) */
    size_t n = python_rstrip_length(line);
    char *result = mmt_malloc(n + 1);
    if (!result) return MMT_STATUS_OUT_OF_MEMORY;
    size_t m = 0, start = 0;
    int first = 1;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && line[i] != ' ') continue;
        size_t len = i - start;
        if (!is_coco_punctuation(line + start, len)) {
            if (!first) result[m++] = ' ';
            memcpy(result + m, line + start, len);
            m += len;
            first = 0;
        }
        start = i + 1;
    }
    result[m] = '\0';
    *out = result;
    return MMT_OK;
}

mmt_status mmt_ptb_coco_tokenize_lines(const char *const *lines, int64_t n_lines, char **out) {
    MMT_TRY(mmt_ptb_tokenize_lines(lines, n_lines, out));
    for (int64_t i = 0; i < n_lines; i++) {
        char *filtered = NULL;
        mmt_status s = mmt_ptb_coco_filter(out[i], &filtered);
        if (s != MMT_OK) { /* lines before i are filtered, the others raw: all go */
            for (int64_t k = 0; k < n_lines; k++) {
                mmt_free(out[k]);
                out[k] = NULL;
            }
            return s;
        }
        mmt_free(out[i]);
        out[i] = filtered;
    }
    return MMT_OK;
}
