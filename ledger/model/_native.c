/* ledger.model._native: the per-event loops of batch preparation and Merkle hashing, in C.
 *
 * Each function is the exact counterpart of a pure-Python function (used when this
 * module is not built; the tests run both and compare them byte for byte):
 *
 *   configure(keys, fields, special, cost_columns, canonical, unsafe)
 *       the event schema, once, at import (ledger/model/batch.py derives it from the
 *       table ledger/model/schema.py): no field name or key order is written here.
 *   scan(events, received_us, low_us, high_us, usd_nanos, limits)
 *       the column checks of ``_scan_python``: which events are plain (a dict of known
 *       keys whose values all pass the fast checks) and their columns.  An event this
 *       code is not sure about is marked slow; the per-event path (the reference) then
 *       decides it, so being cautious costs time, never correctness.
 *   encode(columns, ts_given, cost_given, want_digest, skip)
 *       the canonical bytes (RFC 8785), leaf hashes and idempotency digests of
 *       ``_encode_python``.
 *   parent_hashes(level)
 *       ledger/tlog/merkle.py's ``parent_hashes`` (one level of an RFC 9162 tree).
 *   pair_hashes(packed)
 *       ledger/tlog/merkle.py's ``pair_hashes_python`` (the same over a packed level).
 *   json_rows(n, keys, columns)
 *       projections/logjson.py's ``_arrow_rows`` (a page of log objects as JSON text).
 *
 * SHA-256 is OpenSSL's (the libcrypto the interpreter's hashlib uses), found at import
 * with dlopen and called through its supported EVP digest interface; if libcrypto
 * cannot be found, hashlib is called instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* -- SHA-256 ------------------------------------------------------------------------ */

/* OpenSSL's supported EVP interface: the SHA-256 implementation is fetched once
 * (EVP_MD_fetch on OpenSSL 3; EVP_sha256 before) and one digest context, allocated by
 * OpenSSL, is reused for every hash (the module's functions hold the GIL throughout).
 * Measured per 600-byte hash: 0.41 µs, against 0.46 µs for the one-shot EVP_Digest
 * (a context allocated per call), 0.64 µs for SHA256() and 0.70 µs for EVP_Digest with
 * EVP_sha256() (both look the implementation up per call); see bench/README.md. */
typedef struct evp_md_st EVP_MD;  /* opaque: only pointers to them are handled here */
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef const EVP_MD *(*evp_sha256_fn)(void);
typedef EVP_MD *(*evp_md_fetch_fn)(void *libctx, const char *name, const char *props);
typedef EVP_MD_CTX *(*evp_md_ctx_new_fn)(void);
typedef int (*evp_init_fn)(EVP_MD_CTX *ctx, const EVP_MD *type, void *engine);
typedef int (*evp_update_fn)(EVP_MD_CTX *ctx, const void *data, size_t count);
typedef int (*evp_final_fn)(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *size);
static evp_init_fn evp_init = NULL;
static evp_update_fn evp_update = NULL;
static evp_final_fn evp_final = NULL;
static const EVP_MD *evp_md_sha256 = NULL;
static EVP_MD_CTX *evp_ctx = NULL;
static PyObject *hashlib_sha256 = NULL;
static int use_openssl = 0;  /* OpenSSL found (and not turned off by sha256_backend) */

static int
sha256(const char *data, Py_ssize_t n, unsigned char out[32])
{
    if (use_openssl) {
        unsigned int size = 0;
        if (evp_init(evp_ctx, evp_md_sha256, NULL) == 1
            && evp_update(evp_ctx, data, (size_t)n) == 1
            && evp_final(evp_ctx, out, &size) == 1 && size == 32)
            return 0;
        /* a failure inside OpenSSL: hashlib answers instead */
    }
    PyObject *h = PyObject_CallFunction(hashlib_sha256, "y#", data, n);
    if (h == NULL)
        return -1;
    PyObject *d = PyObject_CallMethod(h, "digest", NULL);
    Py_DECREF(h);
    if (d == NULL)
        return -1;
    memcpy(out, PyBytes_AS_STRING(d), 32);
    Py_DECREF(d);
    return 0;
}

/* Look for libcrypto's EVP digest functions and SHA-256; use_openssl stays 0 if they are
 * not found. */
static void
find_openssl(void)
{
    const char *names[] = {"libcrypto.so.3", "libcrypto.so", "libcrypto.so.1.1",
                           "libcrypto.dylib", NULL};
    for (int i = 0; names[i] != NULL && evp_ctx == NULL; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib == NULL)
            continue;
        evp_md_fetch_fn fetch = (evp_md_fetch_fn)dlsym(lib, "EVP_MD_fetch");
        evp_sha256_fn legacy = (evp_sha256_fn)dlsym(lib, "EVP_sha256");
        evp_md_ctx_new_fn ctx_new = (evp_md_ctx_new_fn)dlsym(lib, "EVP_MD_CTX_new");
        evp_init = (evp_init_fn)dlsym(lib, "EVP_DigestInit_ex");
        evp_update = (evp_update_fn)dlsym(lib, "EVP_DigestUpdate");
        evp_final = (evp_final_fn)dlsym(lib, "EVP_DigestFinal_ex");
        evp_md_sha256 = NULL;
        if (ctx_new != NULL && evp_init != NULL && evp_update != NULL && evp_final != NULL) {
            if (fetch != NULL)
                evp_md_sha256 = fetch(NULL, "SHA256", NULL);
            if (evp_md_sha256 == NULL && legacy != NULL)
                evp_md_sha256 = legacy();
            if (evp_md_sha256 != NULL)
                evp_ctx = ctx_new();
        }
        if (evp_ctx == NULL)
            dlclose(lib);  /* (a fetched EVP_MD is not freed: nothing else was made) */
    }
    use_openssl = evp_ctx != NULL;
}

/* -- a growable byte buffer --------------------------------------------------------- */

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int
buf_grow(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int
buf_put(Buf *b, const char *s, Py_ssize_t n)
{
    if (buf_grow(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

#define PUT_LIT(b, lit) buf_put((b), (lit), (Py_ssize_t)(sizeof(lit) - 1))

static int
buf_put_i64(Buf *b, long long v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    return buf_put(b, p, end - p);
}

/* The body of a JSON string (without the quotes) as RFC 8785 writes it: '"', '\' and
 * the control characters escaped (the short forms where JSON has them, else \u00xx),
 * everything else as UTF-8. */
static int
buf_put_escaped(Buf *b, const char *s, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (buf_put(b, s + start, i - start) < 0)
            return -1;
        start = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        Py_ssize_t m = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            m = 6;
        }
        if (buf_put(b, esc, m) < 0)
            return -1;
    }
    return buf_put(b, s + start, n - start);
}

/* The UTF-8 of a str (NULL with an exception for anything else). */
static const char *
utf8_of(PyObject *s, Py_ssize_t *n)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "expected str, got %.80s", Py_TYPE(s)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(s, n);
}

/* A str as the inside of a JSON string. */
static int
put_str_body(Buf *b, PyObject *s)
{
    Py_ssize_t n;
    const char *u = utf8_of(s, &n);
    return u == NULL ? -1 : buf_put_escaped(b, u, n);
}

/* A str as a JSON string, or None as null. */
static int
put_str_value(Buf *b, PyObject *s)
{
    if (s == Py_None)
        return PUT_LIT(b, "null");
    if (buf_put(b, "\"", 1) < 0 || put_str_body(b, s) < 0)
        return -1;
    return buf_put(b, "\"", 1);
}

/* An int as JSON, or None as null. */
static int
put_int_value(Buf *b, PyObject *v)
{
    if (v == Py_None)
        return PUT_LIT(b, "null");
    if (!PyLong_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "expected int, got %.80s", Py_TYPE(v)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0) {
        if (x == -1 && PyErr_Occurred())
            return -1;
        return buf_put_i64(b, x);
    }
    PyObject *text = PyObject_Str(v);
    if (text == NULL)
        return -1;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(text, &n);
    int rc = u == NULL ? -1 : buf_put(b, u, n);
    Py_DECREF(text);
    return rc;
}

/* A str written as it is (text that is JSON already). */
static int
put_raw(Buf *b, PyObject *s)
{
    Py_ssize_t n;
    const char *u = utf8_of(s, &n);
    return u == NULL ? -1 : buf_put(b, u, n);
}

/* -- the schema, from configure() -------------------------------------------------- */

#define MAX_FIELDS 64

/* How encode() writes a canonical value (batch._ENCODINGS). */
enum { ENC_STR, ENC_STR_OR_NULL, ENC_INT, ENC_RAW };
/* What the idempotency digest does with a key (batch._DIGEST_RULES). */
enum { DIGEST_SAME, DIGEST_IF_COST_GIVEN, DIGEST_IF_TS_GIVEN, DIGEST_LEFT_OUT };

typedef struct {
    PyObject *key_json;  /* bytes: ,"name": */
    int encoding, rule;
} CanonKey;

static CanonKey canon[MAX_FIELDS];
static int n_canon = 0;

/* How scan() checks a simple field (batch._SIMPLE_CHECKS). */
enum { CHECK_ID, CHECK_TEXT, CHECK_COUNT, CHECK_CHOICE, CHECK_SHA256 };

typedef struct {
    PyObject *key;      /* interned */
    int check;
    Py_ssize_t min_len;
    long long max;      /* longest text, or largest count */
    PyObject *dflt;     /* when the key is absent */
    int nullable;       /* None is allowed */
    PyObject *choices;  /* tuple of str, for CHECK_CHOICE */
} FieldSpec;

static FieldSpec fields[MAX_FIELDS];
static int n_fields = 0;
static int i_cost_nanos = -1, i_cost_source = -1;  /* indexes in fields[] */
static PyObject *allowed_keys = NULL;  /* frozenset of the keys an event may carry */
static PyObject *K_TS, *K_TIMESTAMP, *K_COST, *K_METADATA, *S_STATED_SOURCE;
static PyObject *S_EMPTY_OBJECT;

/* The characters no id, text or metadata key may hold (schema.UNSAFE_RANGES): inclusive
 * code point ranges, and the same rule for ASCII as a table. */
#define MAX_UNSAFE 32
static Py_UCS4 unsafe_lo[MAX_UNSAFE], unsafe_hi[MAX_UNSAFE];
static int n_unsafe = 0;
static unsigned char unsafe_ascii[128];

static inline int
unsafe_char(Py_UCS4 c)
{
    if (c < 128)
        return unsafe_ascii[c];
    for (int k = 0; k < n_unsafe; k++)
        if (c >= unsafe_lo[k] && c <= unsafe_hi[k])
            return 1;
    return 0;
}

/* 1: str s holds a character of the unsafe ranges; 0: not. */
static int
has_unsafe(PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (unsafe_char(PyUnicode_READ(kind, data, i)))
            return 1;
    return 0;
}

static void
clear_schema(void)
{
    for (int k = 0; k < n_canon; k++)
        Py_CLEAR(canon[k].key_json);
    for (int k = 0; k < n_fields; k++) {
        Py_CLEAR(fields[k].key);
        Py_CLEAR(fields[k].dflt);
        Py_CLEAR(fields[k].choices);
    }
    n_canon = n_fields = n_unsafe = 0;
    Py_CLEAR(allowed_keys);
    Py_CLEAR(K_TS);
    Py_CLEAR(K_TIMESTAMP);
    Py_CLEAR(K_COST);
    Py_CLEAR(K_METADATA);
    Py_CLEAR(S_STATED_SOURCE);
}

static int
interned(PyObject *s, PyObject **slot)
{
    if (!PyUnicode_CheckExact(s)) {
        PyErr_SetString(PyExc_TypeError, "configure: keys must be str");
        return -1;
    }
    Py_INCREF(s);
    PyUnicode_InternInPlace(&s);
    *slot = s;
    return 0;
}

static PyObject *
native_configure(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"keys", "fields", "special", "cost_columns", "canonical",
                             "unsafe", NULL};
    PyObject *keys, *spec, *special, *canonical, *unsafe;
    int cost_nanos_at, cost_source_at;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!(ii)O!O!:configure", kwlist,
                                     &PyFrozenSet_Type, &keys, &PyTuple_Type, &spec,
                                     &PyTuple_Type, &special, &cost_nanos_at,
                                     &cost_source_at, &PyTuple_Type, &canonical,
                                     &PyTuple_Type, &unsafe))
        return NULL;
    clear_schema();  /* a schema refused leaves the module unconfigured */
    if (PyTuple_GET_SIZE(unsafe) > MAX_UNSAFE)
        return PyErr_Format(PyExc_ValueError, "configure: at most %d unsafe ranges",
                            MAX_UNSAFE);
    memset(unsafe_ascii, 0, sizeof unsafe_ascii);
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(unsafe); k++) {
        unsigned int lo, hi;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(unsafe, k), "II:unsafe", &lo, &hi))
            return NULL;
        if (lo > hi || hi > 0x10FFFF)
            return PyErr_Format(PyExc_ValueError, "configure: bad unsafe range");
        unsafe_lo[k] = lo;
        unsafe_hi[k] = hi;
        for (unsigned int c = lo; c <= hi && c < 128; c++)
            unsafe_ascii[c] = 1;
        n_unsafe = (int)k + 1;
    }
    Py_ssize_t nf = PyTuple_GET_SIZE(spec), nc = PyTuple_GET_SIZE(canonical);
    if (nf > MAX_FIELDS || nc > MAX_FIELDS)
        return PyErr_Format(PyExc_ValueError, "configure: at most %d fields", MAX_FIELDS);
    if (cost_nanos_at < 0 || cost_nanos_at >= nf || cost_source_at < 0
        || cost_source_at >= nf)
        return PyErr_Format(PyExc_ValueError, "configure: cost_columns out of range");
    Py_INCREF(keys);
    allowed_keys = keys;
    PyObject *ts, *timestamp, *cost, *metadata, *stated;
    if (!PyArg_ParseTuple(special, "UUUUU:special", &ts, &timestamp, &cost, &metadata,
                          &stated)
        || interned(ts, &K_TS) < 0 || interned(timestamp, &K_TIMESTAMP) < 0
        || interned(cost, &K_COST) < 0 || interned(metadata, &K_METADATA) < 0
        || interned(stated, &S_STATED_SOURCE) < 0)
        goto fail;
    for (Py_ssize_t k = 0; k < nf; k++) {
        FieldSpec *f = &fields[k];
        PyObject *key, *dflt, *choices;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(spec, k), "UinLOpO!:field", &key, &f->check,
                              &f->min_len, &f->max, &dflt, &f->nullable, &PyTuple_Type,
                              &choices))
            goto fail;
        if (f->check < CHECK_ID || f->check > CHECK_SHA256) {
            PyErr_Format(PyExc_ValueError, "configure: unknown check %d", f->check);
            goto fail;
        }
        if (interned(key, &f->key) < 0)
            goto fail;
        Py_INCREF(dflt);
        f->dflt = dflt;
        Py_INCREF(choices);
        f->choices = choices;
        n_fields = (int)k + 1;
    }
    for (Py_ssize_t k = 0; k < nc; k++) {
        CanonKey *c = &canon[k];
        PyObject *key;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(canonical, k), "Uii:canonical", &key,
                              &c->encoding, &c->rule))
            goto fail;
        if (c->encoding < ENC_STR || c->encoding > ENC_RAW || c->rule < DIGEST_SAME
            || c->rule > DIGEST_LEFT_OUT) {
            PyErr_SetString(PyExc_ValueError, "configure: unknown encoding or digest rule");
            goto fail;
        }
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(key, &n);
        if (u == NULL)
            goto fail;
        c->key_json = PyBytes_FromFormat(",\"%s\":", u);
        if (c->key_json == NULL)
            goto fail;
        n_canon = (int)k + 1;
    }
    i_cost_nanos = cost_nanos_at;
    i_cost_source = cost_source_at;
    Py_RETURN_NONE;
fail:
    clear_schema();
    return NULL;
}

static int
configured(void)
{
    if (allowed_keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ledger.model._native: configure() first");
        return 0;
    }
    return 1;
}

/* -- encode ------------------------------------------------------------------------- */

static inline int
put_value(Buf *b, PyObject *v, int encoding)
{
    switch (encoding) {
    case ENC_STR:
        if (buf_put(b, "\"", 1) < 0 || put_str_body(b, v) < 0)
            return -1;
        return buf_put(b, "\"", 1);
    case ENC_STR_OR_NULL:
        return put_str_value(b, v);
    case ENC_INT:
        return put_int_value(b, v);
    default:
        return put_raw(b, v);
    }
}

/* What encode() writes for one event, worked out once per call from the canonical keys:
 * literal text (the keys, punctuation, and the values that are the same for every event,
 * such as the tenant) between the values taken from the columns. */
enum { OP_END = -1, OP_STR_BODY = 100 };  /* else an ENC_* value */
#define LIT_COPY 32

typedef struct {
    Py_ssize_t lit, lit_len;  /* the literal text before the value, in Program.lits */
    int op, col, rule;        /* rule: DIGEST_SAME or when the value is written as null */
} Op;

typedef struct {
    Buf lits;
    Op ops[MAX_FIELDS + 1];
    int n;
    Py_ssize_t pending;  /* where the literal text of the next op starts */
} Program;

static int
prog_text(Program *p, const char *s, Py_ssize_t n)
{
    return buf_put(&p->lits, s, n);
}

static void
prog_op(Program *p, int op, int col, int rule)
{
    Op *o = &p->ops[p->n++];
    o->lit = p->pending;
    o->lit_len = p->lits.len - p->pending;
    o->op = op;
    o->col = col;
    o->rule = rule;
    p->pending = p->lits.len;
}

/* The canonical bytes' program, or (digest) the idempotency digest's: keys left out,
 * and the values the ledger may have filled in written as null unless stated. */
static int
prog_build(Program *p, int digest, PyObject **col, const int *per_event)
{
    int first = 1;
    for (int k = 0; k < n_canon; k++) {
        const CanonKey *c = &canon[k];
        int rule = digest ? c->rule : DIGEST_SAME;
        if (rule == DIGEST_LEFT_OUT)
            continue;
        const char *key = PyBytes_AS_STRING(c->key_json);  /* ,"name": */
        Py_ssize_t n = PyBytes_GET_SIZE(c->key_json);
        if ((first ? prog_text(p, "{", 1) < 0 || prog_text(p, key + 1, n - 1) < 0
                   : prog_text(p, key, n) < 0))
            return -1;
        first = 0;
        if (!per_event[k]) {  /* the same value for every event */
            if (rule != DIGEST_SAME) {
                PyErr_SetString(PyExc_ValueError, "encode: a digest-dependent column "
                                                  "must be a list");
                return -1;
            }
            if (put_value(&p->lits, col[k], c->encoding) < 0)
                return -1;
        }
        else if (c->encoding == ENC_STR && rule == DIGEST_SAME) {
            if (prog_text(p, "\"", 1) < 0)
                return -1;
            prog_op(p, OP_STR_BODY, k, rule);
            if (prog_text(p, "\"", 1) < 0)
                return -1;
        }
        else
            prog_op(p, c->encoding, k, rule);
    }
    if (prog_text(p, "}", 1) < 0)
        return -1;
    prog_op(p, OP_END, 0, DIGEST_SAME);
    /* room for prog_run's fixed-size copies past the last literal */
    if (buf_grow(&p->lits, LIT_COPY) < 0)
        return -1;
    memset(p->lits.p + p->lits.len, 0, LIT_COPY);
    return 0;
}

static int
prog_run(const Program *p, Buf *b, PyObject **v, int given_cost, int given_ts)
{
    for (const Op *o = p->ops;; o++) {
        if (o->lit_len <= LIT_COPY) {  /* a fixed-size copy: faster than a short memcpy */
            if (buf_grow(b, LIT_COPY) < 0)
                return -1;
            memcpy(b->p + b->len, p->lits.p + o->lit, LIT_COPY);
            b->len += o->lit_len;
        }
        else if (buf_put(b, p->lits.p + o->lit, o->lit_len) < 0)
            return -1;
        if (o->op == OP_END)
            return 0;
        if (o->op == OP_STR_BODY) {
            if (put_str_body(b, v[o->col]) < 0)
                return -1;
            continue;
        }
        if ((o->rule == DIGEST_IF_COST_GIVEN && !given_cost)
            || (o->rule == DIGEST_IF_TS_GIVEN && !given_ts)) {
            if (PUT_LIT(b, "null") < 0)
                return -1;
        }
        else if (put_value(b, v[o->col], o->op) < 0)
            return -1;
    }
}

static int
is_list_of(PyObject *o, Py_ssize_t n, const char *what)
{
    if (!PyList_Check(o) || PyList_GET_SIZE(o) != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected a list of %zd items", what, n);
        return 0;
    }
    return 1;
}

static PyObject *
native_encode(PyObject *self, PyObject *args)
{
    PyObject *columns, *ts_given, *cost_given, *want_digest, *skip;
    if (!PyArg_ParseTuple(args, "O!OOOO:encode", &PyTuple_Type, &columns, &ts_given,
                          &cost_given, &want_digest, &skip))
        return NULL;
    if (!configured())
        return NULL;
    if (PyTuple_GET_SIZE(columns) != n_canon)
        return PyErr_Format(PyExc_ValueError, "encode: expected %d columns", n_canon);
    Py_ssize_t n = PyList_Check(skip) ? PyList_GET_SIZE(skip) : -1;
    if (!is_list_of(skip, n, "skip") || !is_list_of(ts_given, n, "ts_given")
        || !is_list_of(cost_given, n, "cost_given")
        || !is_list_of(want_digest, n, "want_digest"))
        return NULL;
    /* a column is a list (one value per event) or one value for every event */
    PyObject *col[MAX_FIELDS];
    int per_event[MAX_FIELDS];
    for (int k = 0; k < n_canon; k++) {
        col[k] = PyTuple_GET_ITEM(columns, k);
        per_event[k] = PyList_Check(col[k]);
        if (per_event[k] && !is_list_of(col[k], n, "column"))
            return NULL;
    }
    PyObject *canonical = PyList_New(n), *leaf = PyList_New(n), *digest = PyList_New(n);
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    Buf b = {0}, d = {0};
    Program body_prog = {0}, digest_prog = {0};
    if (canonical == NULL || leaf == NULL || digest == NULL || empty == NULL
        || prog_build(&body_prog, 0, col, per_event) < 0
        || prog_build(&digest_prog, 1, col, per_event) < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_IsTrue(PyList_GET_ITEM(skip, i))) {
            Py_INCREF(empty); PyList_SET_ITEM(canonical, i, empty);
            Py_INCREF(empty); PyList_SET_ITEM(leaf, i, empty);
            Py_INCREF(empty); PyList_SET_ITEM(digest, i, empty);
            continue;
        }
        PyObject *v[MAX_FIELDS];
        for (int k = 0; k < n_canon; k++)
            v[k] = per_event[k] ? PyList_GET_ITEM(col[k], i) : NULL;
        unsigned char md[32];

        /* canonical bytes, after a 0x00 byte: the leaf hash is SHA-256(0x00 || bytes) */
        b.len = 0;
        if (buf_put(&b, "\0", 1) < 0 || prog_run(&body_prog, &b, v, 1, 1) < 0)
            goto fail;
        PyObject *body = PyBytes_FromStringAndSize(b.p + 1, b.len - 1);
        if (body == NULL)
            goto fail;
        PyList_SET_ITEM(canonical, i, body);
        if (sha256(b.p, b.len, md) < 0)
            goto fail;
        PyObject *h = PyBytes_FromStringAndSize((const char *)md, 32);
        if (h == NULL)
            goto fail;
        PyList_SET_ITEM(leaf, i, h);

        if (!PyObject_IsTrue(PyList_GET_ITEM(want_digest, i))) {
            Py_INCREF(empty);
            PyList_SET_ITEM(digest, i, empty);
            continue;
        }
        /* the digest: what the caller stated (no generated cost or ts, no version) */
        d.len = 0;
        if (prog_run(&digest_prog, &d, v, PyObject_IsTrue(PyList_GET_ITEM(cost_given, i)),
                     PyObject_IsTrue(PyList_GET_ITEM(ts_given, i))) < 0
            || sha256(d.p, d.len, md) < 0)
            goto fail;
        h = PyBytes_FromStringAndSize((const char *)md, 16);
        if (h == NULL)
            goto fail;
        PyList_SET_ITEM(digest, i, h);
    }
    PyMem_Free(b.p);
    PyMem_Free(d.p);
    PyMem_Free(body_prog.lits.p);
    PyMem_Free(digest_prog.lits.p);
    Py_DECREF(empty);
    return Py_BuildValue("(NNN)", canonical, leaf, digest);
fail:
    PyMem_Free(b.p);
    PyMem_Free(d.p);
    PyMem_Free(body_prog.lits.p);
    PyMem_Free(digest_prog.lits.p);
    Py_XDECREF(empty);
    Py_XDECREF(canonical);
    Py_XDECREF(leaf);
    Py_XDECREF(digest);
    return NULL;
}

/* -- scan --------------------------------------------------------------------------- */

/* The columns scan() returns: slow, one per field of fields[] (the cost ones resolved),
 * then these (batch._SCAN_COLUMNS). */
enum { X_COST_GIVEN, X_TS_US, X_TS_GIVEN, X_TS_TEXT, X_METADATA, X_METADATA_JSON, N_EXTRA };
#define MAX_OUT (1 + MAX_FIELDS + N_EXTRA)
#define O_SLOW 0
#define O_FIELD(k) (1 + (k))
#define O_EXTRA(x) (1 + n_fields + (x))

typedef struct {
    Py_ssize_t max_metadata_bytes;
    long long max_safe_int, max_cost_nanos, low_us, high_us;
    PyObject *usd_nanos;  /* batch._usd_nanos, for the costs this code does not read */
} Limits;

/* 1: a clean str of allowed length (none of the unsafe characters, and for ids no white
 * space); 0: not. */
static int
text_ok(PyObject *v, Py_ssize_t min_len, Py_ssize_t max_len, int is_id)
{
    if (!PyUnicode_CheckExact(v))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    if (n < min_len || n > max_len)
        return 0;
    int kind = PyUnicode_KIND(v);
    const void *data = PyUnicode_DATA(v);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (unsafe_char(c))
            return 0;
        if (is_id && (c == ' ' || (c >= 0x80 && Py_UNICODE_ISSPACE(c))))
            return 0;
    }
    return 1;
}

/* 1: an int (not a bool) from 0 to max; 0: not. */
static int
count_ok(PyObject *v, long long max)
{
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return x >= 0 && x <= max;
}

static int
sha256_text_ok(PyObject *v)
{
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v) || PyUnicode_GET_LENGTH(v) != 64)
        return 0;
    const unsigned char *s = PyUnicode_1BYTE_DATA(v);
    for (int i = 0; i < 64; i++) {
        unsigned char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static void
civil_from_days(long long z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long yy = (long long)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

static int
days_in_month(int y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

static int
digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* An RFC 3339 text with a time zone (YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM)), as
 * datetime.fromisoformat reads it, in microseconds since the epoch; 0 if the text is
 * anything else (or a corner this code leaves to the per-event path). */
static int
parse_rfc3339(PyObject *v, long long *us)
{
    if (!PyUnicode_IS_ASCII(v))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    const char *s = (const char *)PyUnicode_1BYTE_DATA(v);
    int y, mo, d, h, mi, sec, frac = 0, off = 0;
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':'
        || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d)
        || !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        return 0;
    Py_ssize_t i = 19;
    if (s[i] == '.') {
        int k = 0;
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9' && k < 7) {
            frac = frac * 10 + (s[i] - '0');
            i++;
            k++;
        }
        if (k == 0 || k > 6)
            return 0;
        for (; k < 6; k++)
            frac *= 10;
    }
    if (i == n - 1 && s[i] == 'Z')
        off = 0;
    else if (i == n - 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return 0;
        off = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
    }
    else
        return 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59
        || sec > 59)
        return 0;
    long long secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400LL + h * 3600LL
                     + mi * 60LL + sec - off * 60LL;
    *us = secs * 1000000LL + frac;
    return 1;
}

/* A datetime whose zone is None (taken as UTC) or UTC, in microseconds since the epoch;
 * 0 for another zone (the per-event path asks it for its offset). */
static int
datetime_us(PyObject *v, long long *us)
{
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
    if (tz != Py_None && tz != PyDateTime_TimeZone_UTC)
        return 0;
    long long days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v),
                                     PyDateTime_GET_DAY(v));
    long long secs = days * 86400LL + PyDateTime_DATE_GET_HOUR(v) * 3600LL
                     + PyDateTime_DATE_GET_MINUTE(v) * 60LL + PyDateTime_DATE_GET_SECOND(v);
    *us = secs * 1000000LL + PyDateTime_DATE_GET_MICROSECOND(v);
    return 1;
}

static inline void
put_digits(char *p, long long v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* format_ts: YYYY-MM-DDTHH:MM:SS.ffffffZ (years 0 to 9999) */
static PyObject *
format_us(long long us)
{
    long long secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    long long frac = us - secs * 1000000;
    long long days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    long long rem = secs - days * 86400;
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return PyErr_Format(PyExc_ValueError, "timestamp out of range: %lld", us);
    char t[27] = "0000-00-00T00:00:00.000000Z";
    put_digits(t, y, 4);
    put_digits(t + 5, m, 2);
    put_digits(t + 8, d, 2);
    put_digits(t + 11, rem / 3600, 2);
    put_digits(t + 14, rem / 60 % 60, 2);
    put_digits(t + 17, rem % 60, 2);
    put_digits(t + 20, frac, 6);
    return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, t, 27);
}

/* The cost in nano-USD of a float the way batch._usd_nanos reads it (its decimal repr),
 * for the plain cases; otherwise batch._usd_nanos itself is asked. Returns a new
 * reference to an int, or Py_None (not a valid cost), or NULL on error. */
static PyObject *
cost_nanos_of(PyObject *c, const Limits *lim)
{
    if (PyFloat_CheckExact(c)) {
        double x = PyFloat_AS_DOUBLE(c);
        if (!isfinite(x) || x < 0)
            Py_RETURN_NONE;
        char *text = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL)
            return NULL;
        const char *dot = strchr(text, '.');
        if (text[0] != '-' && strchr(text, 'e') == NULL && dot != NULL && dot - text <= 9) {
            long long whole = 0, frac = 0;
            for (const char *p = text; p < dot; p++)
                whole = whole * 10 + (*p - '0');
            const char *f = dot + 1;
            size_t k = strlen(f);
            while (k > 0 && f[k - 1] == '0')
                k--;
            if (k > 9) {
                PyMem_Free(text);
                Py_RETURN_NONE;
            }
            for (size_t j = 0; j < 9; j++)
                frac = frac * 10 + (j < k ? f[j] - '0' : 0);
            PyMem_Free(text);
            return PyLong_FromLongLong(whole * 1000000000LL + frac);
        }
        PyMem_Free(text);
    }
    return PyObject_CallOneArg(lim->usd_nanos, c);
}

static int
cmp_keys(const void *a, const void *b)
{
    PyObject *const *x = a, *const *y = b;
    return PyUnicode_Compare(x[0], y[0]);
}

/* The canonical JSON text of a flat metadata dict of strs, safe ints, bools and Nones
 * (batch._simple_metadata_json); Py_None for anything else; NULL on error. */
static PyObject *
metadata_json(PyObject *meta, Buf *b, const Limits *lim)
{
    Py_ssize_t n = PyDict_GET_SIZE(meta);
    if (n == 0) {
        Py_INCREF(S_EMPTY_OBJECT);
        return S_EMPTY_OBJECT;
    }
    PyObject **items = PyMem_Malloc(sizeof(PyObject *) * 2 * (size_t)n);
    if (items == NULL)
        return PyErr_NoMemory();
    PyObject *key, *value, *result = NULL;
    Py_ssize_t pos = 0, k = 0;
    while (PyDict_Next(meta, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || PyUnicode_KIND(key) == PyUnicode_4BYTE_KIND
            || has_unsafe(key))
            goto simple_no;
        if (PyLong_CheckExact(value)) {
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow != 0 || x < -lim->max_safe_int || x > lim->max_safe_int)
                goto simple_no;
        }
        else if (PyUnicode_CheckExact(value)) {
            if (PyUnicode_KIND(value) == PyUnicode_4BYTE_KIND)
                goto simple_no;
        }
        else if (!PyBool_Check(value) && value != Py_None)
            goto simple_no;
        items[2 * k] = key;
        items[2 * k + 1] = value;
        k++;
    }
    if (k != n)
        goto simple_no;
    qsort(items, (size_t)n, 2 * sizeof(PyObject *), cmp_keys);
    b->len = 0;
    if (buf_put(b, "{", 1) < 0)
        goto done;
    for (Py_ssize_t j = 0; j < n; j++) {
        key = items[2 * j];
        value = items[2 * j + 1];
        Py_ssize_t len;
        const char *u = PyUnicode_AsUTF8AndSize(key, &len);
        if (u == NULL)  /* a lone surrogate: not encodable */
            goto simple_no_clear;
        if ((j && buf_put(b, ",", 1) < 0) || buf_put(b, "\"", 1) < 0
            || buf_put_escaped(b, u, len) < 0 || buf_put(b, "\":", 2) < 0)
            goto done;
        if (PyUnicode_CheckExact(value)) {
            u = PyUnicode_AsUTF8AndSize(value, &len);
            if (u == NULL)
                goto simple_no_clear;
            if (buf_put(b, "\"", 1) < 0 || buf_put_escaped(b, u, len) < 0
                || buf_put(b, "\"", 1) < 0)
                goto done;
        }
        else if (value == Py_True) {
            if (PUT_LIT(b, "true") < 0)
                goto done;
        }
        else if (value == Py_False) {
            if (PUT_LIT(b, "false") < 0)
                goto done;
        }
        else if (value == Py_None) {
            if (PUT_LIT(b, "null") < 0)
                goto done;
        }
        else if (buf_put_i64(b, PyLong_AsLongLong(value)) < 0)
            goto done;
        if (b->len > lim->max_metadata_bytes)
            goto simple_no;
    }
    if (buf_put(b, "}", 1) < 0)
        goto done;
    if (b->len > lim->max_metadata_bytes)
        goto simple_no;
    result = PyUnicode_DecodeUTF8(b->p, b->len, NULL);
    goto done;
simple_no_clear:
    PyErr_Clear();
simple_no:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyMem_Free(items);
    return result;
}

/* The value of key in e, or dflt (borrowed references; NULL only on error). */
static inline PyObject *
get(PyObject *e, PyObject *key, PyObject *dflt)
{
    PyObject *v = PyDict_GetItemWithError(e, key);
    if (v == NULL && !PyErr_Occurred())
        return dflt;
    return v;
}

/* Sets out[] for one plain event; returns 1 (done), 0 (slow) or -1 (error). */
static int
scan_one(PyObject *e, PyObject **out, long long received, const Limits *lim, Buf *b)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (!PyDict_CheckExact(e))
        return 0;
    while (PyDict_Next(e, &pos, &key, &value)) {
        int known = PySet_Contains(allowed_keys, key);
        if (known <= 0)
            return known;
    }
#define GET(var, k, dflt)               \
    PyObject *var = get(e, (k), (dflt)); \
    if (var == NULL && PyErr_Occurred()) \
        return -1;
    GET(ts, K_TS, NULL)
    GET(timestamp, K_TIMESTAMP, NULL)
    if (ts != NULL && timestamp != NULL)
        return 0;

    /* the fields with one rule each: texts, counts, choices, hashes (borrowed) */
    PyObject *v[MAX_FIELDS];
    for (int k = 0; k < n_fields; k++) {
        const FieldSpec *f = &fields[k];
        GET(x, f->key, f->dflt)
        if (x == Py_None) {
            if (!f->nullable)
                return 0;
        }
        else {
            int ok = 0;
            switch (f->check) {
            case CHECK_ID:
            case CHECK_TEXT:
                ok = text_ok(x, f->min_len, (Py_ssize_t)f->max, f->check == CHECK_ID);
                break;
            case CHECK_COUNT:
                ok = count_ok(x, f->max);
                break;
            case CHECK_SHA256:
                ok = sha256_text_ok(x);
                break;
            case CHECK_CHOICE:
                if (!PyUnicode_CheckExact(x))
                    break;
                for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(f->choices) && !ok; c++) {
                    PyObject *choice = PyTuple_GET_ITEM(f->choices, c);
                    if (PyUnicode_Compare(x, choice) == 0) {
                        x = choice;
                        ok = 1;
                    }
                }
                break;
            }
            if (!ok)
                return 0;
        }
        v[k] = x;
    }

    /* cost */
    PyObject *cost_nanos = v[i_cost_nanos], *source = v[i_cost_source];
    GET(cost, K_COST, Py_None)
    PyObject *nanos = NULL;  /* a new reference when set */
    if (cost != Py_None) {
        nanos = cost_nanos_of(cost, lim);
        if (nanos == NULL)
            return -1;
        if (nanos == Py_None || !count_ok(nanos, lim->max_cost_nanos)) {
            Py_DECREF(nanos);
            return 0;
        }
        if (cost_nanos != Py_None) {
            int same = PyObject_RichCompareBool(cost_nanos, nanos, Py_EQ);
            if (same <= 0) {
                Py_DECREF(nanos);
                return same;
            }
        }
    }
    else if (cost_nanos != Py_None) {
        nanos = cost_nanos;
        Py_INCREF(nanos);
    }
    if (nanos == NULL && source != Py_None)
        return 0;

    /* timestamp */
    PyObject *when = ts != NULL && ts != Py_None ? ts : timestamp;
    long long us = received;
    int ts_given = when != NULL && when != Py_None;
    if (ts_given) {
        int ok;
        if (PyUnicode_CheckExact(when))
            ok = parse_rfc3339(when, &us);
        else if (PyDateTime_CheckExact(when))
            ok = datetime_us(when, &us);
        else
            ok = 0;
        if (!ok || us < lim->low_us || us > lim->high_us) {
            Py_XDECREF(nanos);
            return 0;
        }
    }

    /* metadata */
    GET(meta, K_METADATA, NULL)
    PyObject *meta_json;
    if (meta == NULL || meta == Py_None) {
        if (meta == Py_None) {
            Py_XDECREF(nanos);
            return 0;
        }
        meta = PyDict_New();
        if (meta == NULL) {
            Py_XDECREF(nanos);
            return -1;
        }
        meta_json = S_EMPTY_OBJECT;
        Py_INCREF(meta_json);
    }
    else {
        if (!PyDict_CheckExact(meta)) {
            Py_XDECREF(nanos);
            return 0;
        }
        meta_json = metadata_json(meta, b, lim);
        if (meta_json == NULL || meta_json == Py_None) {
            Py_XDECREF(nanos);
            Py_XDECREF(meta_json);
            return meta_json == NULL ? -1 : 0;
        }
        Py_INCREF(meta);
    }
    PyObject *text = format_us(us);
    if (text == NULL) {
        Py_XDECREF(nanos);
        Py_DECREF(meta);
        Py_DECREF(meta_json);
        return -1;
    }
#undef GET
    /* every check passed: fill the row (the caller releases what is set on error) */
    for (int k = 0; k < n_fields; k++) {
        Py_INCREF(v[k]);
        out[O_FIELD(k)] = v[k];
    }
    Py_DECREF(out[O_FIELD(i_cost_nanos)]);
    Py_DECREF(out[O_FIELD(i_cost_source)]);
    if (nanos != NULL) {
        out[O_FIELD(i_cost_nanos)] = nanos;
        out[O_FIELD(i_cost_source)] = source == Py_None ? S_STATED_SOURCE : source;
        out[O_EXTRA(X_COST_GIVEN)] = Py_True;
    }
    else {
        out[O_FIELD(i_cost_nanos)] = Py_None;
        out[O_FIELD(i_cost_source)] = Py_None;
        out[O_EXTRA(X_COST_GIVEN)] = Py_False;
        Py_INCREF(Py_None);
    }
    Py_INCREF(out[O_FIELD(i_cost_source)]);
    Py_INCREF(out[O_EXTRA(X_COST_GIVEN)]);
    out[O_EXTRA(X_TS_GIVEN)] = ts_given ? Py_True : Py_False;
    Py_INCREF(out[O_EXTRA(X_TS_GIVEN)]);
    out[O_EXTRA(X_TS_TEXT)] = text;
    out[O_EXTRA(X_METADATA)] = meta;
    out[O_EXTRA(X_METADATA_JSON)] = meta_json;
    out[O_EXTRA(X_TS_US)] = PyLong_FromLongLong(us);
    if (out[O_EXTRA(X_TS_US)] == NULL)
        return -1;
    return 1;
}

static PyObject *
native_scan(PyObject *self, PyObject *args)
{
    PyObject *events, *received;
    Limits lim;
    if (!PyArg_ParseTuple(args, "O!O!LLO(nLL):scan", &PyList_Type, &events, &PyList_Type,
                          &received, &lim.low_us, &lim.high_us, &lim.usd_nanos,
                          &lim.max_metadata_bytes, &lim.max_safe_int, &lim.max_cost_nanos))
        return NULL;
    if (!configured())
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(events);
    if (PyList_GET_SIZE(received) != n)
        return PyErr_Format(PyExc_ValueError, "received_us: expected %zd items", n);
    int n_out = 1 + n_fields + N_EXTRA;
    PyObject *cols[MAX_OUT];
    for (int k = 0; k < n_out; k++)
        cols[k] = NULL;
    Buf b = {0};
    for (int k = 0; k < n_out; k++) {
        cols[k] = PyList_New(n);
        if (cols[k] == NULL)
            goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *out[MAX_OUT];
        for (int k = 0; k < n_out; k++)
            out[k] = NULL;
        long long received_us = PyLong_AsLongLong(PyList_GET_ITEM(received, i));
        if (received_us == -1 && PyErr_Occurred())
            goto fail;
        int rc = scan_one(PyList_GET_ITEM(events, i), out, received_us, &lim, &b);
        if (rc < 0) {
            for (int k = 0; k < n_out; k++)
                Py_XDECREF(out[k]);
            goto fail;
        }
        if (rc == 0) {  /* slow: placeholders the per-event path replaces */
            for (int k = 0; k < n_out; k++) {
                Py_XDECREF(out[k]);
                out[k] = Py_None;
                Py_INCREF(Py_None);
            }
            Py_DECREF(Py_None);
            out[O_SLOW] = Py_True;
            Py_INCREF(Py_True);
            Py_DECREF(Py_None);
            out[O_EXTRA(X_COST_GIVEN)] = Py_False;
            Py_INCREF(Py_False);
            Py_DECREF(Py_None);
            out[O_EXTRA(X_TS_GIVEN)] = Py_False;
            Py_INCREF(Py_False);
            Py_DECREF(Py_None);
            out[O_EXTRA(X_TS_US)] = PyList_GET_ITEM(received, i);
            Py_INCREF(out[O_EXTRA(X_TS_US)]);
        }
        else {
            out[O_SLOW] = Py_False;
            Py_INCREF(Py_False);
        }
        for (int k = 0; k < n_out; k++)
            PyList_SET_ITEM(cols[k], i, out[k]);
    }
    PyMem_Free(b.p);
    PyObject *result = PyTuple_New(n_out);
    if (result == NULL)
        goto fail_freed;
    for (int k = 0; k < n_out; k++)
        PyTuple_SET_ITEM(result, k, cols[k]);
    return result;
fail:
    PyMem_Free(b.p);
fail_freed:
    for (int k = 0; k < n_out; k++)
        Py_XDECREF(cols[k]);
    return NULL;
}

/* -- Merkle ------------------------------------------------------------------------- */

/* merkle.parent_hashes: SHA-256(0x01 || left || right) of adjacent pairs, an odd last
 * node moved up unchanged. */
static PyObject *
native_parent_hashes(PyObject *self, PyObject *arg)
{
    PyObject *level = PySequence_Fast(arg, "parent_hashes: expected a sequence of bytes");
    if (level == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(level);
    PyObject **items = PySequence_Fast_ITEMS(level);
    PyObject *out = PyList_New((n + 1) / 2);
    Buf b = {0};
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i + 1 < n; i += 2) {
        Py_buffer l, r;
        if (PyObject_GetBuffer(items[i], &l, PyBUF_SIMPLE) < 0)
            goto fail;
        if (PyObject_GetBuffer(items[i + 1], &r, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&l);
            goto fail;
        }
        b.len = 0;
        int rc = buf_put(&b, "\x01", 1) < 0 || buf_put(&b, l.buf, l.len) < 0
                 || buf_put(&b, r.buf, r.len) < 0;
        PyBuffer_Release(&l);
        PyBuffer_Release(&r);
        if (rc)
            goto fail;
        unsigned char md[32];
        if (sha256(b.p, b.len, md) < 0)
            goto fail;
        PyObject *h = PyBytes_FromStringAndSize((const char *)md, 32);
        if (h == NULL)
            goto fail;
        PyList_SET_ITEM(out, i / 2, h);
    }
    if (n % 2) {
        Py_INCREF(items[n - 1]);
        PyList_SET_ITEM(out, n / 2, items[n - 1]);
    }
    PyMem_Free(b.p);
    Py_DECREF(level);
    return out;
fail:
    PyMem_Free(b.p);
    Py_XDECREF(out);
    Py_DECREF(level);
    return NULL;
}

/* pair_hashes(packed) -> ledger/tlog/merkle.py's ``pair_hashes_python``: the node hash
 * of each adjacent pair of a packed level (32-byte hashes, a whole number of pairs),
 * packed. */
static PyObject *
native_pair_hashes(PyObject *self, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    if (in.len % 64) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "pair_hashes: the length must be a multiple of 64");
        return NULL;
    }
    Py_ssize_t pairs = in.len / 64;
    PyObject *out = PyBytes_FromStringAndSize(NULL, pairs * 32);
    if (out == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    const char *src = (const char *)in.buf;
    char node[65];
    node[0] = 1;
    for (Py_ssize_t i = 0; i < pairs; i++) {
        memcpy(node + 1, src + 64 * i, 64);
        if (sha256(node, 65, dst + 32 * i) < 0) {
            Py_DECREF(out);
            PyBuffer_Release(&in);
            return NULL;
        }
    }
    PyBuffer_Release(&in);
    return out;
}

/* sha256_backend([name]) -> the backend in use ("openssl" or "hashlib"); with a name,
 * switch to it first (for the tests of the hashlib fallback; "openssl" only if found). */
static PyObject *
native_sha256_backend(PyObject *self, PyObject *args)
{
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "|s:sha256_backend", &name))
        return NULL;
    if (name != NULL) {
        if (strcmp(name, "hashlib") == 0)
            use_openssl = 0;
        else if (strcmp(name, "openssl") == 0 && evp_ctx != NULL)
            use_openssl = 1;
        else
            return PyErr_Format(PyExc_ValueError, "sha256 backend %s is not available", name);
    }
    return PyUnicode_FromString(use_openssl ? "openssl" : "hashlib");
}

/* -- JSON rows ---------------------------------------------------------------------- */

/* One column of json_rows: its form and its buffers (held while the rows are written). */
typedef struct {
    char form;              /* 'i' int64, 's' text, 't' timestamp (µs), 'c' JSON texts */
    Py_buffer values;       /* 'i'/'t': int64; 's': int64 offsets (n + 1); 'c': "a,b,…" */
    Py_buffer data;         /* 's': the UTF-8 bytes the offsets point into */
    Py_buffer valid;        /* 'i'/'s': uint8 per row (0: null); len 0: none is null */
    int has_data, has_valid;
    Py_ssize_t at;          /* 'c': where the next text starts */
} json_column;

/* The text of a string as orjson writes it: quoted; the quote, the backslash and the C0
 * controls escaped (\b \t \n \f \r, else \u00xx); every other byte as it is. */
static int
put_json_string(Buf *o, const unsigned char *s, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (buf_grow(o, (Py_ssize_t)n * 6 + 2) < 0)
        return -1;
    char *w = o->p + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\t': *w++ = 't'; break;
        case '\n': *w++ = 'n'; break;
        case '\f': *w++ = 'f'; break;
        case '\r': *w++ = 'r'; break;
        default:
            *w++ = 'u'; *w++ = '0'; *w++ = '0';
            *w++ = hex[c >> 4]; *w++ = hex[c & 15];
        }
    }
    *w++ = '"';
    o->len = w - o->p;
    return 0;
}

/* Two decimal digits of 0 <= v < 100 at w. */
static void
put2(char *w, int v)
{
    w[0] = (char)('0' + v / 10);
    w[1] = (char)('0' + v % 10);
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ", quoted: numpy's datetime_as_string(unit="us") plus Z
 * (days to a civil date: H. Hinnant's algorithm). 1 when the year is not 1 to 9999
 * (where numpy's text differs in form): the caller then leaves the page to Python. */
static int
put_timestamp(Buf *o, int64_t us)
{
    int64_t day = us / 86400000000LL, rem = us % 86400000000LL;
    if (rem < 0) {
        rem += 86400000000LL;
        day -= 1;
    }
    int64_t z = day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    if (y < 1 || y > 9999)
        return 1;
    int secs = (int)(rem / 1000000), micros = (int)(rem % 1000000);
    if (buf_grow(o, 29) < 0)
        return -1;
    char *w = o->p + o->len;  /* "YYYY-MM-DDTHH:MM:SS.ffffffZ" */
    w[0] = '"';
    put2(w + 1, (int)(y / 100));
    put2(w + 3, (int)(y % 100));
    w[5] = '-';
    put2(w + 6, (int)m);
    w[8] = '-';
    put2(w + 9, (int)d);
    w[11] = 'T';
    put2(w + 12, secs / 3600);
    w[14] = ':';
    put2(w + 15, secs / 60 % 60);
    w[17] = ':';
    put2(w + 18, secs % 60);
    w[20] = '.';
    put2(w + 21, micros / 10000);
    put2(w + 23, micros / 100 % 100);
    put2(w + 25, micros % 100);
    w[27] = 'Z';
    w[28] = '"';
    o->len += 29;
    return 0;
}

static void
release_columns(json_column *cols, Py_ssize_t k)
{
    for (Py_ssize_t j = 0; j < k; j++) {
        PyBuffer_Release(&cols[j].values);
        if (cols[j].has_data)
            PyBuffer_Release(&cols[j].data);
        if (cols[j].has_valid)
            PyBuffer_Release(&cols[j].valid);
    }
}

/* json_rows(n, keys, columns) -> b'{"k0":v,"k1":v,…},{…},…' (no brackets): the JSON
 * objects of n rows, keys[j] (bytes, '"name":' with its separator before it) then the
 * value of columns[j] in each, for projections/logjson.py (whose Arrow version it must
 * equal byte for byte). A column is ('i', int64 values, valid or None), ('s', int64
 * offsets, data, valid or None), ('t', int64 µs) or ('c', b"text,text,…"). ValueError
 * when a timestamp is outside years 1 to 9999 (Python then writes the page). */
static PyObject *
native_json_rows(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    PyObject *keys, *columns;
    if (!PyArg_ParseTuple(args, "nO!O!:json_rows", &n, &PyTuple_Type, &keys, &PyTuple_Type,
                          &columns))
        return NULL;
    Py_ssize_t k = PyTuple_GET_SIZE(columns);
    if (PyTuple_GET_SIZE(keys) != k || k == 0 || n < 0)
        return PyErr_Format(PyExc_ValueError, "json_rows: keys and columns differ");
    json_column *cols = PyMem_Calloc((size_t)k, sizeof(json_column));
    if (cols == NULL)
        return PyErr_NoMemory();
    Py_ssize_t ready = 0;
    PyObject *result = NULL;
    Buf o = {0};
    for (; ready < k; ready++) {
        json_column *c = &cols[ready];
        PyObject *spec = PyTuple_GET_ITEM(columns, ready);
        const char *form;
        PyObject *values, *data = Py_None, *valid = Py_None;
        if (!PyArg_ParseTuple(spec, "sO|OO:json_rows column", &form, &values, &data, &valid))
            goto done;
        c->form = form[0];
        if (c->form == 'i')
            valid = data;
        if (PyObject_GetBuffer(values, &c->values, PyBUF_SIMPLE) < 0)
            goto done;
        if (c->form == 's' && data != Py_None) {
            if (PyObject_GetBuffer(data, &c->data, PyBUF_SIMPLE) < 0) {
                PyBuffer_Release(&c->values);
                goto done;
            }
            c->has_data = 1;
        }
        if ((c->form == 'i' || c->form == 's') && valid != Py_None) {
            if (PyObject_GetBuffer(valid, &c->valid, PyBUF_SIMPLE) < 0) {
                PyBuffer_Release(&c->values);
                if (c->has_data)
                    PyBuffer_Release(&c->data);
                goto done;
            }
            c->has_valid = 1;
        }
        Py_ssize_t need = c->form == 's' ? (n + 1) * 8 : (c->form == 'c' ? 0 : n * 8);
        if (c->values.len < need || (c->form == 's' && !c->has_data)
                || (c->has_valid && c->valid.len < n)
                || !strchr("istc", c->form) || !PyBytes_Check(PyTuple_GET_ITEM(keys, ready))) {
            ready++;
            PyErr_SetString(PyExc_ValueError, "json_rows: a column does not fit");
            goto done;
        }
    }
    if (buf_grow(&o, (Py_ssize_t)n * 64 * (Py_ssize_t)k + 16) < 0)  /* most pages: no regrowth */
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t j = 0; j < k; j++) {
            json_column *c = &cols[j];
            PyObject *key = PyTuple_GET_ITEM(keys, j);
            if (buf_put(&o, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)) < 0)
                goto done;
            int null = c->has_valid && ((const unsigned char *)c->valid.buf)[i] == 0;
            int failed = 0;
            if (null) {
                failed = buf_put(&o, "null", 4);
            } else if (c->form == 'i') {
                failed = buf_put_i64(&o, (long long)((const int64_t *)c->values.buf)[i]);
            } else if (c->form == 's') {
                const int64_t *offsets = c->values.buf;
                int64_t lo = offsets[i], hi = offsets[i + 1];
                if (lo < 0 || hi < lo || hi > c->data.len) {
                    PyErr_SetString(PyExc_ValueError, "json_rows: offsets out of range");
                    goto done;
                }
                failed = put_json_string(&o, (const unsigned char *)c->data.buf + lo, hi - lo);
            } else if (c->form == 't') {
                failed = put_timestamp(&o, ((const int64_t *)c->values.buf)[i]);
                if (failed == 1) {
                    PyErr_SetString(PyExc_ValueError, "json_rows: a timestamp outside years "
                                    "1 to 9999");
                    goto done;
                }
            } else {  /* 'c' */
                const char *text = c->values.buf;
                Py_ssize_t end = c->at;
                while (end < c->values.len && text[end] != ',')
                    end++;
                if (end == c->at) {
                    PyErr_SetString(PyExc_ValueError, "json_rows: too few texts");
                    goto done;
                }
                failed = buf_put(&o, text + c->at, end - c->at);
                c->at = end + 1;
            }
            if (failed)
                goto done;
        }
        if (buf_put(&o, i + 1 < n ? "}," : "}", i + 1 < n ? 2 : 1) < 0)
            goto done;
    }
    result = PyBytes_FromStringAndSize(o.p ? o.p : "", (Py_ssize_t)o.len);
done:
    release_columns(cols, ready);
    PyMem_Free(cols);
    PyMem_Free(o.p);
    return result;
}

/* -- module ------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))native_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(keys, fields, special, cost_columns, canonical, unsafe): the event schema"},
    {"scan", native_scan, METH_VARARGS,
     "scan(events, received_us, low_us, high_us, usd_nanos, limits) -> columns"},
    {"encode", native_encode, METH_VARARGS,
     "encode(columns, ts_given, cost_given, want_digest, skip) -> (canonical, leaf, digest)"},
    {"sha256_backend", native_sha256_backend, METH_VARARGS,
     "sha256_backend([name]) -> 'openssl' or 'hashlib' (switching to name first)"},
    {"parent_hashes", native_parent_hashes, METH_O,
     "parent_hashes(level) -> the next level of an RFC 9162 tree"},
    {"pair_hashes", native_pair_hashes, METH_O,
     "pair_hashes(packed) -> the node hashes of its adjacent pairs, packed"},
    {"json_rows", native_json_rows, METH_VARARGS,
     "json_rows(n, keys, columns) -> the JSON objects of n rows, comma-separated"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ledger.model._native",
    "Batch preparation loops in C (see ledger/model/batch.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    S_EMPTY_OBJECT = PyUnicode_InternFromString("{}");
    if (S_EMPTY_OBJECT == NULL)
        return NULL;
    find_openssl();
    PyObject *hashlib = PyImport_ImportModule("hashlib");
    if (hashlib == NULL)
        return NULL;
    hashlib_sha256 = PyObject_GetAttrString(hashlib, "sha256");
    Py_DECREF(hashlib);
    if (hashlib_sha256 == NULL)
        return NULL;
    return PyModule_Create(&module);
}
