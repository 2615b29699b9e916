/* ledger.model._native: the per-event loops of batch preparation and Merkle hashing, in C.
 *
 * Each function is the exact counterpart of a pure-Python function (used when this
 * module is not built; the tests run both and compare them byte for byte):
 *
 *   scan(events, keys, received_us, low_us, high_us, usd_nanos, limits)
 *       the column checks of ``_scan_python``: which events are plain (a dict of known
 *       keys whose values all pass the fast checks) and their columns.  An event this
 *       code is not sure about is marked slow; the per-event path (the reference) then
 *       decides it, so being cautious costs time, never correctness.
 *   encode(tenant, version, columns, ts_given, cost_given, want_digest, skip)
 *       the canonical bytes (RFC 8785), leaf hashes and idempotency digests of
 *       ``_encode_python``.
 *   parent_hashes(level)
 *       ledger/merkle.py's ``parent_hashes`` (one level of an RFC 9162 tree).
 *
 * SHA-256 is OpenSSL's (the libcrypto the interpreter's hashlib uses), found at import
 * with dlopen; if it cannot be found, hashlib is called instead.
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

/* OpenSSL's low-level SHA256_Init/Update/Final: unlike the one-shot SHA256() of
 * OpenSSL 3, they do not look the algorithm up on every call. The context is opaque
 * here (112 bytes in OpenSSL; more room is given). */
typedef struct {
    _Alignas(16) unsigned char opaque[256];
} sha256_ctx;
typedef int (*sha256_init_fn)(sha256_ctx *);
typedef int (*sha256_update_fn)(sha256_ctx *, const void *, size_t);
typedef int (*sha256_final_fn)(unsigned char *, sha256_ctx *);
static sha256_init_fn openssl_init = NULL;
static sha256_update_fn openssl_update = NULL;
static sha256_final_fn openssl_final = NULL;
static PyObject *hashlib_sha256 = NULL;
static int use_openssl = 0;  /* OpenSSL found (and not turned off by use_hashlib) */

static int
sha256(const char *data, Py_ssize_t n, unsigned char out[32])
{
    if (use_openssl) {
        sha256_ctx ctx;
        openssl_init(&ctx);
        openssl_update(&ctx, data, (size_t)n);
        openssl_final(out, &ctx);
        return 0;
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

/* -- encode ------------------------------------------------------------------------- */

/* The columns of encode(), in the canonical (sorted) key order. */
enum {
    C_ALIAS, C_CACHE_WRITE, C_CACHED, C_CONTENT, C_CONV, C_COST, C_SOURCE, C_EVENT_ID,
    C_ID_AT_ORIGIN, C_INPUT, C_KIND, C_LATENCY, C_META, C_MODEL, C_ORIGIN, C_OUTPUT,
    C_PRICE_ID, C_PROFILE, C_PROVIDER, C_REASONING, C_TS, N_COLUMNS
};

/* The fields before the cost, which the canonical bytes and the digest share. */
static int
put_head(Buf *b, PyObject **v)
{
    if (PUT_LIT(b, "{\"alias\":\"") < 0 || put_str_body(b, v[C_ALIAS]) < 0
        || PUT_LIT(b, "\",\"cache_write_tokens\":") < 0 || put_int_value(b, v[C_CACHE_WRITE]) < 0
        || PUT_LIT(b, ",\"cached_input_tokens\":") < 0 || put_int_value(b, v[C_CACHED]) < 0
        || PUT_LIT(b, ",\"content_sha256\":") < 0 || put_str_value(b, v[C_CONTENT]) < 0
        || PUT_LIT(b, ",\"conversation_id\":") < 0 || put_str_value(b, v[C_CONV]) < 0)
        return -1;
    return 0;
}

/* From the event id to the price id (exclusive). */
static int
put_middle(Buf *b, PyObject **v)
{
    if (PUT_LIT(b, ",\"event_id\":\"") < 0 || put_str_body(b, v[C_EVENT_ID]) < 0
        || PUT_LIT(b, "\",\"id_at_origin\":") < 0 || put_str_value(b, v[C_ID_AT_ORIGIN]) < 0
        || PUT_LIT(b, ",\"input_tokens\":") < 0 || put_int_value(b, v[C_INPUT]) < 0
        || PUT_LIT(b, ",\"kind\":\"") < 0 || put_str_body(b, v[C_KIND]) < 0
        || PUT_LIT(b, "\",\"latency_ms\":") < 0 || put_int_value(b, v[C_LATENCY]) < 0
        || PUT_LIT(b, ",\"metadata\":") < 0 || put_raw(b, v[C_META]) < 0
        || PUT_LIT(b, ",\"model\":\"") < 0 || put_str_body(b, v[C_MODEL]) < 0
        || PUT_LIT(b, "\",\"origin\":") < 0 || put_str_value(b, v[C_ORIGIN]) < 0
        || PUT_LIT(b, ",\"output_tokens\":") < 0 || put_int_value(b, v[C_OUTPUT]) < 0)
        return -1;
    return 0;
}

/* From the profile to the tenant (inclusive). */
static int
put_tail(Buf *b, PyObject **v, const char *tenant, Py_ssize_t tenant_len)
{
    if (PUT_LIT(b, ",\"profile\":\"") < 0 || put_str_body(b, v[C_PROFILE]) < 0
        || PUT_LIT(b, "\",\"provider\":\"") < 0 || put_str_body(b, v[C_PROVIDER]) < 0
        || PUT_LIT(b, "\",\"reasoning_tokens\":") < 0 || put_int_value(b, v[C_REASONING]) < 0
        || PUT_LIT(b, ",\"tenant\":\"") < 0 || buf_put(b, tenant, tenant_len) < 0)
        return -1;
    return 0;
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
    PyObject *tenant, *columns, *ts_given, *cost_given, *want_digest, *skip;
    long long version;
    if (!PyArg_ParseTuple(args, "ULO!OOOO:encode", &tenant, &version, &PyTuple_Type,
                          &columns, &ts_given, &cost_given, &want_digest, &skip))
        return NULL;
    if (PyTuple_GET_SIZE(columns) != N_COLUMNS)
        return PyErr_Format(PyExc_ValueError, "encode: expected %d columns", N_COLUMNS);
    Py_ssize_t n = PyList_Check(skip) ? PyList_GET_SIZE(skip) : -1;
    if (!is_list_of(skip, n, "skip") || !is_list_of(ts_given, n, "ts_given")
        || !is_list_of(cost_given, n, "cost_given")
        || !is_list_of(want_digest, n, "want_digest"))
        return NULL;
    PyObject *col[N_COLUMNS];
    for (int k = 0; k < N_COLUMNS; k++) {
        col[k] = PyTuple_GET_ITEM(columns, k);
        if (!is_list_of(col[k], n, "column"))
            return NULL;
    }
    Buf tb = {0};
    if (put_str_body(&tb, tenant) < 0) {
        PyMem_Free(tb.p);
        return NULL;
    }
    PyObject *canonical = PyList_New(n), *leaf = PyList_New(n), *digest = PyList_New(n);
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    Buf b = {0}, d = {0};
    if (canonical == NULL || leaf == NULL || digest == NULL || empty == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_IsTrue(PyList_GET_ITEM(skip, i))) {
            Py_INCREF(empty); PyList_SET_ITEM(canonical, i, empty);
            Py_INCREF(empty); PyList_SET_ITEM(leaf, i, empty);
            Py_INCREF(empty); PyList_SET_ITEM(digest, i, empty);
            continue;
        }
        PyObject *v[N_COLUMNS];
        for (int k = 0; k < N_COLUMNS; k++)
            v[k] = PyList_GET_ITEM(col[k], i);
        unsigned char md[32];

        /* canonical bytes, after a 0x00 byte: the leaf hash is SHA-256(0x00 || bytes) */
        b.len = 0;
        if (buf_put(&b, "\0", 1) < 0 || put_head(&b, v) < 0
            || PUT_LIT(&b, ",\"cost_nanos\":") < 0 || put_int_value(&b, v[C_COST]) < 0
            || PUT_LIT(&b, ",\"cost_source\":\"") < 0 || put_str_body(&b, v[C_SOURCE]) < 0
            || PUT_LIT(&b, "\"") < 0 || put_middle(&b, v) < 0
            || PUT_LIT(&b, ",\"price_id\":") < 0 || put_str_value(&b, v[C_PRICE_ID]) < 0
            || put_tail(&b, v, tb.p, tb.len) < 0 || PUT_LIT(&b, "\",\"ts\":\"") < 0
            || put_raw(&b, v[C_TS]) < 0 || PUT_LIT(&b, "\",\"v\":") < 0
            || buf_put_i64(&b, version) < 0 || PUT_LIT(&b, "}") < 0)
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
        /* the digest: what the caller stated (no generated cost, ts or version) */
        int given_cost = PyObject_IsTrue(PyList_GET_ITEM(cost_given, i));
        int given_ts = PyObject_IsTrue(PyList_GET_ITEM(ts_given, i));
        d.len = 0;
        if (put_head(&d, v) < 0)
            goto fail;
        if (given_cost) {
            if (PUT_LIT(&d, ",\"cost_nanos\":") < 0 || put_int_value(&d, v[C_COST]) < 0
                || PUT_LIT(&d, ",\"cost_source\":\"") < 0 || put_str_body(&d, v[C_SOURCE]) < 0
                || PUT_LIT(&d, "\"") < 0)
                goto fail;
        }
        else if (PUT_LIT(&d, ",\"cost_nanos\":null,\"cost_source\":null") < 0)
            goto fail;
        if (put_middle(&d, v) < 0 || PUT_LIT(&d, ",\"price_id\":") < 0
            || (given_cost ? put_str_value(&d, v[C_PRICE_ID]) : PUT_LIT(&d, "null")) < 0
            || put_tail(&d, v, tb.p, tb.len) < 0)
            goto fail;
        if (given_ts) {
            if (PUT_LIT(&d, "\",\"ts\":\"") < 0 || put_raw(&d, v[C_TS]) < 0
                || PUT_LIT(&d, "\"}") < 0)
                goto fail;
        }
        else if (PUT_LIT(&d, "\",\"ts\":null}") < 0)
            goto fail;
        if (sha256(d.p, d.len, md) < 0)
            goto fail;
        h = PyBytes_FromStringAndSize((const char *)md, 16);
        if (h == NULL)
            goto fail;
        PyList_SET_ITEM(digest, i, h);
    }
    PyMem_Free(tb.p);
    PyMem_Free(b.p);
    PyMem_Free(d.p);
    Py_DECREF(empty);
    return Py_BuildValue("(NNN)", canonical, leaf, digest);
fail:
    PyMem_Free(tb.p);
    PyMem_Free(b.p);
    PyMem_Free(d.p);
    Py_XDECREF(empty);
    Py_XDECREF(canonical);
    Py_XDECREF(leaf);
    Py_XDECREF(digest);
    return NULL;
}

/* -- scan --------------------------------------------------------------------------- */

/* Interned key names and default values. */
static PyObject *K_EVENT_ID, *K_CONV, *K_ID_AT_ORIGIN, *K_PROVIDER, *K_MODEL, *K_ALIAS,
    *K_PROFILE, *K_PRICE_ID, *K_ORIGIN, *K_KIND, *K_CONTENT, *K_INPUT, *K_OUTPUT,
    *K_CACHED, *K_CACHE_WRITE, *K_REASONING, *K_LATENCY, *K_COST_NANOS, *K_COST,
    *K_COST_SOURCE, *K_TS, *K_TIMESTAMP, *K_METADATA;
static PyObject *S_EMPTY, *S_DEFAULT, *S_USAGE, *S_CONVERSATION, *S_PROVIDER, *S_CLIENT,
    *S_EMPTY_OBJECT, *I_ZERO;

/* The columns scan() returns, in this order. */
enum {
    O_SLOW, O_EVENT_ID, O_CONV, O_ID_AT_ORIGIN, O_PROVIDER, O_MODEL, O_ALIAS, O_PROFILE,
    O_PRICE_ID, O_ORIGIN, O_KIND, O_CONTENT, O_INPUT, O_OUTPUT, O_CACHED, O_CACHE_WRITE,
    O_REASONING, O_LATENCY, O_COST_NANOS, O_COST_SOURCE, O_COST_GIVEN, O_TS_US, O_TS_GIVEN,
    O_TS_TEXT, O_METADATA, O_METADATA_JSON, N_OUT
};

typedef struct {
    Py_ssize_t max_id, max_text, max_metadata_bytes;
    long long max_safe_int, max_cost_nanos, low_us, high_us;
    PyObject *keys;       /* frozenset of the keys an event may carry */
    PyObject *usd_nanos;  /* batch._usd_nanos, for the costs this code does not read */
} Limits;

/* 1: a clean str of allowed length (no control character, no surrogate, and for ids no
 * white space); 0: not. */
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
        if (c < 0x20 || (c >= 0xD800 && c <= 0xDFFF))
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
        if (!PyUnicode_CheckExact(key) || PyUnicode_KIND(key) == PyUnicode_4BYTE_KIND)
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

/* Sets out[k] for one plain event; returns 1 (done), 0 (slow) or -1 (error). */
static int
scan_one(PyObject *e, PyObject **out, long long received, const Limits *lim, Buf *b)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (!PyDict_CheckExact(e))
        return 0;
    while (PyDict_Next(e, &pos, &key, &value)) {
        int known = PySet_Contains(lim->keys, key);
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

    /* texts */
    GET(event_id, K_EVENT_ID, Py_None)
    GET(conv, K_CONV, Py_None)
    GET(id_at_origin, K_ID_AT_ORIGIN, Py_None)
    GET(provider, K_PROVIDER, Py_None)
    GET(model, K_MODEL, Py_None)
    GET(alias, K_ALIAS, S_EMPTY)
    GET(profile, K_PROFILE, S_DEFAULT)
    GET(price_id, K_PRICE_ID, Py_None)
    GET(origin, K_ORIGIN, Py_None)
    GET(kind, K_KIND, S_USAGE)
    GET(content, K_CONTENT, Py_None)
    if ((event_id != Py_None && !text_ok(event_id, 1, lim->max_id, 1))
        || (conv != Py_None && !text_ok(conv, 1, lim->max_id, 1))
        || (id_at_origin != Py_None && !text_ok(id_at_origin, 0, lim->max_id, 1))
        || !text_ok(provider, 1, lim->max_text, 0) || !text_ok(model, 1, lim->max_text, 0)
        || !text_ok(alias, 0, lim->max_text, 0) || !text_ok(profile, 0, lim->max_text, 0)
        || (price_id != Py_None && !text_ok(price_id, 0, lim->max_text, 0))
        || (origin != Py_None && !text_ok(origin, 0, lim->max_text, 0)))
        return 0;
    if (!PyUnicode_CheckExact(kind))
        return 0;
    if (PyUnicode_Compare(kind, S_USAGE) == 0)
        kind = S_USAGE;
    else if (PyUnicode_Compare(kind, S_CONVERSATION) == 0)
        kind = S_CONVERSATION;
    else
        return 0;
    if (content != Py_None && !sha256_text_ok(content))
        return 0;

    /* integers */
    GET(input, K_INPUT, I_ZERO)
    GET(output, K_OUTPUT, I_ZERO)
    GET(cached, K_CACHED, I_ZERO)
    GET(cache_write, K_CACHE_WRITE, I_ZERO)
    GET(reasoning, K_REASONING, I_ZERO)
    GET(latency, K_LATENCY, Py_None)
    GET(cost_nanos, K_COST_NANOS, Py_None)
    long long max = lim->max_safe_int;
    if (!count_ok(input, max) || !count_ok(output, max) || !count_ok(cached, max)
        || !count_ok(cache_write, max) || !count_ok(reasoning, max)
        || (latency != Py_None && !count_ok(latency, max))
        || (cost_nanos != Py_None && !count_ok(cost_nanos, max)))
        return 0;

    /* cost */
    GET(cost, K_COST, Py_None)
    GET(source, K_COST_SOURCE, Py_None)
    if (source != Py_None) {
        if (!PyUnicode_CheckExact(source))
            return 0;
        if (PyUnicode_Compare(source, S_PROVIDER) == 0)
            source = S_PROVIDER;
        else if (PyUnicode_Compare(source, S_CLIENT) == 0)
            source = S_CLIENT;
        else
            return 0;
    }
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
    /* every check passed: fill the row (out[] holds borrowed Py_None placeholders) */
#define SET(k, v) do { Py_INCREF(v); out[k] = (v); } while (0)
    SET(O_EVENT_ID, event_id);
    SET(O_CONV, conv);
    SET(O_ID_AT_ORIGIN, id_at_origin);
    SET(O_PROVIDER, provider);
    SET(O_MODEL, model);
    SET(O_ALIAS, alias);
    SET(O_PROFILE, profile);
    SET(O_PRICE_ID, price_id);
    SET(O_ORIGIN, origin);
    SET(O_KIND, kind);
    SET(O_CONTENT, content);
    SET(O_INPUT, input);
    SET(O_OUTPUT, output);
    SET(O_CACHED, cached);
    SET(O_CACHE_WRITE, cache_write);
    SET(O_REASONING, reasoning);
    SET(O_LATENCY, latency);
#undef SET
    if (nanos != NULL) {
        out[O_COST_NANOS] = nanos;
        out[O_COST_SOURCE] = source == Py_None ? S_CLIENT : source;
        Py_INCREF(out[O_COST_SOURCE]);
        out[O_COST_GIVEN] = Py_True;
    }
    else {
        out[O_COST_NANOS] = Py_None;
        out[O_COST_SOURCE] = Py_None;
        out[O_COST_GIVEN] = Py_False;
        Py_INCREF(Py_None);
        Py_INCREF(Py_None);
    }
    Py_INCREF(out[O_COST_GIVEN]);
    out[O_TS_US] = PyLong_FromLongLong(us);
    if (out[O_TS_US] == NULL)
        return -1;  /* the caller releases what is set */
    out[O_TS_GIVEN] = ts_given ? Py_True : Py_False;
    Py_INCREF(out[O_TS_GIVEN]);
    out[O_TS_TEXT] = text;
    out[O_METADATA] = meta;
    out[O_METADATA_JSON] = meta_json;
    return 1;
}

static PyObject *
native_scan(PyObject *self, PyObject *args)
{
    PyObject *events, *received;
    Limits lim;
    if (!PyArg_ParseTuple(args, "O!O!O!LLO(nnnLL):scan", &PyList_Type, &events,
                          &PyFrozenSet_Type, &lim.keys, &PyList_Type, &received, &lim.low_us,
                          &lim.high_us, &lim.usd_nanos, &lim.max_id, &lim.max_text,
                          &lim.max_metadata_bytes, &lim.max_safe_int,
                          &lim.max_cost_nanos))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(events);
    if (PyList_GET_SIZE(received) != n)
        return PyErr_Format(PyExc_ValueError, "received_us: expected %zd items", n);
    PyObject *cols[N_OUT];
    for (int k = 0; k < N_OUT; k++)
        cols[k] = NULL;
    Buf b = {0};
    for (int k = 0; k < N_OUT; k++) {
        cols[k] = PyList_New(n);
        if (cols[k] == NULL)
            goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *out[N_OUT];
        for (int k = 0; k < N_OUT; k++)
            out[k] = NULL;
        long long received_us = PyLong_AsLongLong(PyList_GET_ITEM(received, i));
        if (received_us == -1 && PyErr_Occurred())
            goto fail;
        int rc = scan_one(PyList_GET_ITEM(events, i), out, received_us, &lim, &b);
        if (rc < 0) {
            for (int k = 0; k < N_OUT; k++)
                Py_XDECREF(out[k]);
            goto fail;
        }
        if (rc == 0) {  /* slow: placeholders the per-event path replaces */
            for (int k = 0; k < N_OUT; k++) {
                Py_XDECREF(out[k]);
                out[k] = Py_None;
                Py_INCREF(Py_None);
            }
            Py_DECREF(out[O_SLOW]);
            out[O_SLOW] = Py_True;
            Py_INCREF(Py_True);
            Py_DECREF(out[O_COST_GIVEN]);
            out[O_COST_GIVEN] = Py_False;
            Py_INCREF(Py_False);
            Py_DECREF(out[O_TS_GIVEN]);
            out[O_TS_GIVEN] = Py_False;
            Py_INCREF(Py_False);
            Py_DECREF(out[O_TS_US]);
            out[O_TS_US] = PyList_GET_ITEM(received, i);
            Py_INCREF(out[O_TS_US]);
        }
        else {
            out[O_SLOW] = Py_False;
            Py_INCREF(Py_False);
        }
        for (int k = 0; k < N_OUT; k++)
            PyList_SET_ITEM(cols[k], i, out[k]);
    }
    PyMem_Free(b.p);
    PyObject *result = PyTuple_New(N_OUT);
    if (result == NULL)
        goto fail_freed;
    for (int k = 0; k < N_OUT; k++)
        PyTuple_SET_ITEM(result, k, cols[k]);
    return result;
fail:
    PyMem_Free(b.p);
fail_freed:
    for (int k = 0; k < N_OUT; k++)
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
        else if (strcmp(name, "openssl") == 0 && openssl_init != NULL)
            use_openssl = 1;
        else
            return PyErr_Format(PyExc_ValueError, "sha256 backend %s is not available", name);
    }
    return PyUnicode_FromString(use_openssl ? "openssl" : "hashlib");
}

/* -- module ------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"scan", native_scan, METH_VARARGS,
     "scan(events, keys, received_us, low_us, high_us, usd_nanos, limits) -> columns"},
    {"encode", native_encode, METH_VARARGS,
     "encode(tenant, version, columns, ts_given, cost_given, want_digest, skip)"
     " -> (canonical, leaf, digest)"},
    {"sha256_backend", native_sha256_backend, METH_VARARGS,
     "sha256_backend([name]) -> 'openssl' or 'hashlib' (switching to name first)"},
    {"parent_hashes", native_parent_hashes, METH_O,
     "parent_hashes(level) -> the next level of an RFC 9162 tree"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ledger.model._native",
    "Batch preparation loops in C (see ledger/batch.py).", -1, methods,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__native(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if (intern(&K_EVENT_ID, "event_id") < 0 || intern(&K_CONV, "conversation_id") < 0
        || intern(&K_ID_AT_ORIGIN, "id_at_origin") < 0 || intern(&K_PROVIDER, "provider") < 0
        || intern(&K_MODEL, "model") < 0 || intern(&K_ALIAS, "alias") < 0
        || intern(&K_PROFILE, "profile") < 0 || intern(&K_PRICE_ID, "price_id") < 0
        || intern(&K_ORIGIN, "origin") < 0 || intern(&K_KIND, "kind") < 0
        || intern(&K_CONTENT, "content_sha256") < 0 || intern(&K_INPUT, "input_tokens") < 0
        || intern(&K_OUTPUT, "output_tokens") < 0
        || intern(&K_CACHED, "cached_input_tokens") < 0
        || intern(&K_CACHE_WRITE, "cache_write_tokens") < 0
        || intern(&K_REASONING, "reasoning_tokens") < 0
        || intern(&K_LATENCY, "latency_ms") < 0 || intern(&K_COST_NANOS, "cost_nanos") < 0
        || intern(&K_COST, "cost") < 0 || intern(&K_COST_SOURCE, "cost_source") < 0
        || intern(&K_TS, "ts") < 0 || intern(&K_TIMESTAMP, "timestamp") < 0
        || intern(&K_METADATA, "metadata") < 0 || intern(&S_EMPTY, "") < 0
        || intern(&S_DEFAULT, "default") < 0 || intern(&S_USAGE, "usage") < 0
        || intern(&S_CONVERSATION, "conversation") < 0
        || intern(&S_PROVIDER, "provider") < 0 || intern(&S_CLIENT, "client") < 0
        || intern(&S_EMPTY_OBJECT, "{}") < 0)
        return NULL;
    I_ZERO = PyLong_FromLong(0);
    if (I_ZERO == NULL)
        return NULL;
    const char *names[] = {"libcrypto.so.3", "libcrypto.so", "libcrypto.so.1.1", NULL};
    for (int i = 0; names[i] != NULL && openssl_init == NULL; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib == NULL)
            continue;
        openssl_init = (sha256_init_fn)dlsym(lib, "SHA256_Init");
        openssl_update = (sha256_update_fn)dlsym(lib, "SHA256_Update");
        openssl_final = (sha256_final_fn)dlsym(lib, "SHA256_Final");
        if (openssl_init == NULL || openssl_update == NULL || openssl_final == NULL) {
            openssl_init = NULL;
            dlclose(lib);
        }
    }
    use_openssl = openssl_init != NULL;
    PyObject *hashlib = PyImport_ImportModule("hashlib");
    if (hashlib == NULL)
        return NULL;
    hashlib_sha256 = PyObject_GetAttrString(hashlib, "sha256");
    Py_DECREF(hashlib);
    if (hashlib_sha256 == NULL)
        return NULL;
    return PyModule_Create(&module);
}
