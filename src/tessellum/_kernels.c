/* tessellum._kernels: compiled loops behind the vectorized Python code.
 *
 * Exact cell coverage of one polygon at a time, accumulated into a dense buffer over
 * its bounding box: the signed-area accumulation of tessellum.geo.coverage with the
 * same arithmetic (every edge cut where it crosses a column line, each piece where it
 * crosses a row line, cut points from the same formula; a piece of vertical extent dy
 * at column offset f adds dy*(1 - f) to its cell and dy*f to the next; a running sum
 * along a buffer row gives each cell's covered fraction). polygon_totals sums the
 * pixels under each polygon straight from the buffer (tessellum.attributes._dense).
 *
 * Arrays come in through the buffer protocol (no numpy headers): the Python callers
 * pass C-contiguous arrays of the documented dtypes; every shape, dtype and offset is
 * checked here before the GIL is released, so a wrong call raises instead of reading
 * out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ------------------------------------------------------------------- */

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static void release(Buf *bufs, int n) {
    for (int i = 0; i < n; i++) {
        if (bufs[i].held) {
            PyBuffer_Release(&bufs[i].view);
            bufs[i].held = 0;
        }
    }
}

/* kind: 'f' float64, 'i' int64, 'n' int32, 'b' bool */
static int kind_ok(const Py_buffer *v, char kind) {
    const char *fmt = v->format ? v->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') fmt++;
    if (fmt[0] == '\0' || fmt[1] != '\0') return 0;
    switch (kind) {
        case 'f': return v->itemsize == 8 && fmt[0] == 'd';
        case 'i': return v->itemsize == 8 && (fmt[0] == 'l' || fmt[0] == 'q');
        case 'n': return v->itemsize == 4 && (fmt[0] == 'i' || fmt[0] == 'l');
        case 'b': return v->itemsize == 1 && (fmt[0] == '?' || fmt[0] == 'B' || fmt[0] == 'b');
    }
    return 0;
}

static const char *kind_name(char kind) {
    switch (kind) {
        case 'f': return "float64";
        case 'i': return "int64";
        case 'n': return "int32";
        default: return "bool";
    }
}

/* A C-contiguous array of `kind` with `ndim` dimensions (writable if asked). */
static int get(PyObject *obj, Buf *b, const char *name, char kind, int ndim, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s array", name,
                     writable ? " writable" : "");
        return -1;
    }
    b->held = 1;
    if (b->view.ndim != ndim || !kind_ok(&b->view, kind)) {
        PyErr_Format(PyExc_ValueError, "%s must be a %d-d %s array", name, ndim,
                     kind_name(kind));
        return -1;
    }
    return 0;
}

static Py_ssize_t dim(const Buf *b, int i) { return b->view.shape[i]; }

/* Offsets must ascend within [0, limit]. */
static int offsets_ok(const int64_t *off, Py_ssize_t n, int64_t limit, const char *name) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (off[i] < 0 || off[i] > limit || (i > 0 && off[i] < off[i - 1])) {
            PyErr_Format(PyExc_ValueError, "%s must ascend within [0, %lld]", name,
                         (long long)limit);
            return 0;
        }
    }
    return 1;
}

/* ---- accumulation -------------------------------------------------------------- */

typedef struct {
    double *data;
    int64_t rows, cols, r0, c0;
} Box;

static inline void piece(const Box *b, double xa, double ya, double xb, double yb,
                         double sign) {
    double dy = (yb - ya) * sign;
    if (dy == 0.0) return; /* horizontal pieces cover nothing */
    double xm = (xa + xb) * 0.5;
    double col = floor(xm);
    double f = xm - col;
    /* a cut point can round one ulp past the box: stay inside the buffer */
    int64_t i = (int64_t)floor((ya + yb) * 0.5) - b->r0;
    int64_t j = (int64_t)col - b->c0;
    if (i < 0) i = 0;
    if (i > b->rows - 1) i = b->rows - 1;
    if (j < 0) j = 0;
    if (j > b->cols - 2) j = b->cols - 2;
    double *row = b->data + i * b->cols;
    row[j] += dy * (1.0 - f);
    row[j + 1] += dy * f;
}

/* The part (x0, y0)-(x1, y1) cut where x crosses an integer (then each piece by rows),
 * or, by_rows, where y does (then each piece accumulated). Cut points are interpolated
 * from the part's start, as the vectorized form does. */
static void cut_rows(const Box *b, double x0, double y0, double x1, double y1, double sign);

static inline void cut(const Box *b, double x0, double y0, double x1, double y1,
                       double sign, const int by_rows) {
    double u0 = by_rows ? y0 : x0, u1 = by_rows ? y1 : x1;
    double v0 = by_rows ? x0 : y0, v1 = by_rows ? x1 : y1;
    double first = floor(fmin(u0, u1)) + 1.0;
    double last = ceil(fmax(u0, u1)) - 1.0;
    double xa = x0, ya = y0;
    if (last >= first) {
        double slope = (v1 - v0) / (u1 - u0);
        int ascending = u1 > u0;
        int64_t n = (int64_t)(last - first) + 1;
        for (int64_t k = 0; k < n; k++) {
            double uk = ascending ? first + (double)k : last - (double)k;
            double vk = v0 + (uk - u0) * slope;
            double xk = by_rows ? vk : uk, yk = by_rows ? uk : vk;
            if (by_rows)
                piece(b, xa, ya, xk, yk, sign);
            else
                cut_rows(b, xa, ya, xk, yk, sign);
            xa = xk;
            ya = yk;
        }
    }
    if (by_rows)
        piece(b, xa, ya, x1, y1, sign);
    else
        cut_rows(b, xa, ya, x1, y1, sign);
}

/* the two specializations (by_rows a constant in each) */
static void cut_rows(const Box *b, double x0, double y0, double x1, double y1, double sign) {
    cut(b, x0, y0, x1, y1, sign, 1);
}

static void cut_columns(const Box *b, double x0, double y0, double x1, double y1,
                        double sign) {
    cut(b, x0, y0, x1, y1, sign, 0);
}

/* The box of vertices [first, stop): rows and columns of their bounding box, plus one
 * column on the right (a piece's share of the next cell). 0 when a coordinate is not
 * finite or the box holds more than max_cells cells (or none). */
static int polygon_box(const double *x, const double *y, int64_t first, int64_t stop,
                       double max_cells, Box *b) {
    if (stop <= first) return 0;
    double minx = x[first], maxx = x[first], miny = y[first], maxy = y[first];
    for (int64_t v = first + 1; v < stop; v++) {
        minx = fmin(minx, x[v]);
        maxx = fmax(maxx, x[v]);
        miny = fmin(miny, y[v]);
        maxy = fmax(maxy, y[v]);
    }
    if (!isfinite(minx) || !isfinite(maxx) || !isfinite(miny) || !isfinite(maxy)) return 0;
    double r0 = floor(miny), c0 = floor(minx);
    double rows = floor(maxy) - r0 + 1.0, cols = floor(maxx) - c0 + 2.0;
    if (rows * cols > max_cells || fabs(r0) > 4e18 || fabs(c0) > 4e18) return 0;
    b->r0 = (int64_t)r0;
    b->c0 = (int64_t)c0;
    b->rows = (int64_t)rows;
    b->cols = (int64_t)cols;
    return 1;
}

static void accumulate(const Box *b, const double *x, const double *y,
                       const int64_t *ring_first, const double *ring_sign, int64_t ring_a,
                       int64_t ring_b) {
    for (int64_t r = ring_a; r < ring_b; r++) {
        double sign = ring_sign[r];
        for (int64_t v = ring_first[r]; v < ring_first[r + 1] - 1; v++)
            cut_columns(b, x[v], y[v], x[v + 1], y[v + 1], sign);
    }
}

/* ---- accumulate_polygon ---------------------------------------------------------- */

PyDoc_STRVAR(accumulate_polygon_doc,
"accumulate_polygon(acc, r0, c0, x, y, ring_first, ring_sign, ring_a, ring_b)\n--\n\n"
"Add rings ring_a:ring_b (vertices ring_first[r]:ring_first[r + 1], closed, in pixel\n"
"coordinates) to acc (float64, rows x cols), whose cell [0, 0] is grid cell (r0, c0);\n"
"a running sum along a row of acc then gives each cell's covered fraction.");

static PyObject *accumulate_polygon(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_acc, *o_x, *o_y, *o_first, *o_sign;
    long long r0, c0, ring_a, ring_b;
    if (!PyArg_ParseTuple(args, "OLLOOOOLL", &o_acc, &r0, &c0, &o_x, &o_y, &o_first,
                          &o_sign, &ring_a, &ring_b))
        return NULL;
    Buf bufs[5];
    memset(bufs, 0, sizeof bufs);
    Buf *acc = &bufs[0], *x = &bufs[1], *y = &bufs[2], *first = &bufs[3], *sign = &bufs[4];
    if (get(o_acc, acc, "acc", 'f', 2, 1) || get(o_x, x, "x", 'f', 1, 0) ||
        get(o_y, y, "y", 'f', 1, 0) || get(o_first, first, "ring_first", 'i', 1, 0) ||
        get(o_sign, sign, "ring_sign", 'f', 1, 0))
        goto fail;
    Py_ssize_t n_rings = dim(sign, 0);
    if (dim(x, 0) != dim(y, 0) || dim(first, 0) != n_rings + 1 || dim(acc, 1) < 2 ||
        dim(acc, 0) < 1 || ring_a < 0 || ring_b < ring_a || ring_b > n_rings) {
        PyErr_SetString(PyExc_ValueError, "inconsistent sizes");
        goto fail;
    }
    if (!offsets_ok(first->view.buf, n_rings + 1, dim(x, 0), "ring_first")) goto fail;
    Box b = {acc->view.buf, dim(acc, 0), dim(acc, 1), r0, c0};
    Py_BEGIN_ALLOW_THREADS
    accumulate(&b, x->view.buf, y->view.buf, first->view.buf, sign->view.buf, ring_a, ring_b);
    Py_END_ALLOW_THREADS
    release(bufs, 5);
    Py_RETURN_NONE;
fail:
    release(bufs, 5);
    return NULL;
}

/* ---- polygon_totals ------------------------------------------------------------- */

typedef struct {
    const uint8_t *valid;
    const double *centred, *area;
    const int32_t *cls;
    int64_t height, width, n_cls, n;
    double eps;
    double *totals, *moments, *class_w; /* (4, n), (4, n), (n, n_cls + 1) */
    int bad_class;
} Sums;

/* Sum polygon g's box (acc: row deltas of the covered fractions). On the second pass,
 * only sum w*(v - mean)^2 into moments[1]. (A flag, not a NaN mean: valid infinite
 * values make the mean NaN, and the first pass must never run twice.) */
static void sum_box(const Box *b, int64_t g, Sums *s, double mean, int second) {
    int64_t n = s->n;
    for (int64_t i = 0; i < b->rows; i++) {
        int64_t row = b->r0 + i;
        if (row < 0 || row >= s->height) continue;
        double cell_area = s->area[row];
        const double *acc = b->data + i * b->cols;
        double cover = 0.0;
        for (int64_t j = 0; j < b->cols; j++) {
            cover += acc[j];
            int64_t col = b->c0 + j;
            if (col < 0 || col >= s->width) continue;
            double f = cover > 1.0 - s->eps ? 1.0 : cover;
            if (f <= s->eps) continue;
            double w = f * cell_area;
            int64_t at = row * s->width + col;
            int ok = s->valid[at] != 0;
            if (second) {
                if (ok) {
                    double d = s->centred[at] - mean;
                    s->moments[n + g] += w * d * d;
                }
                continue;
            }
            s->totals[2 * n + g] += w;
            s->totals[3 * n + g] += f;
            if (!ok) continue;
            s->totals[g] += 1.0;
            s->totals[n + g] += w;
            if (s->n_cls) {
                int32_t k = s->cls[at];
                if (k < 0 || k > s->n_cls) {
                    s->bad_class = 1;
                    continue;
                }
                s->class_w[g * (s->n_cls + 1) + k] += w;
            } else {
                double v = s->centred[at];
                s->moments[g] += w * v;
                s->moments[2 * n + g] += f * v;
                s->moments[3 * n + g] += f;
            }
        }
    }
}

PyDoc_STRVAR(polygon_totals_doc,
"polygon_totals(x, y, ring_first, ring_sign, geom_first, valid, centred, cls, n_cls,\n"
"               area, eps, max_cells, spread, done, totals, moments, class_w)\n--\n\n"
"Sum the pixels under every polygon whose box holds at most max_cells cells.\n\n"
"Polygon g owns rings geom_first[g]:geom_first[g + 1]. valid (bool), centred (float64,\n"
"values minus a shift; used when n_cls == 0) and cls (int32 class index in\n"
"[0, n_cls]; used when n_cls > 0) are (H, W) mosaics, area (float64, H) the cell\n"
"area per row. Fractions within eps of 0 are dropped, within eps of 1 set to 1.\n"
"Outputs (zeroed by the caller): done (bool, n); totals (float64, 4 x n: valid\n"
"pixels, valid weight, total weight, total fraction); moments (float64, 4 x n: sum\n"
"w*v, sum w*(v - mean)^2 when spread, sum f*v, sum f, over valid pixels); class_w\n"
"(float64, n x (n_cls + 1)) the weight of each class.");

static PyObject *polygon_totals(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[13];
    long long n_cls, max_cells;
    double eps;
    int spread;
    if (!PyArg_ParseTuple(args, "OOOOOOOOLOdLpOOOO", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &o[5], &o[6], &o[7], &n_cls, &o[8], &eps, &max_cells, &spread,
                          &o[9], &o[10], &o[11], &o[12]))
        return NULL;
    Buf bufs[13];
    memset(bufs, 0, sizeof bufs);
    Buf *x = &bufs[0], *y = &bufs[1], *first = &bufs[2], *sign = &bufs[3],
        *gfirst = &bufs[4], *valid = &bufs[5], *centred = &bufs[6], *cls = &bufs[7],
        *area = &bufs[8], *done = &bufs[9], *totals = &bufs[10], *moments = &bufs[11],
        *class_w = &bufs[12];
    if (get(o[0], x, "x", 'f', 1, 0) || get(o[1], y, "y", 'f', 1, 0) ||
        get(o[2], first, "ring_first", 'i', 1, 0) || get(o[3], sign, "ring_sign", 'f', 1, 0) ||
        get(o[4], gfirst, "geom_first", 'i', 1, 0) || get(o[5], valid, "valid", 'b', 2, 0) ||
        get(o[6], centred, "centred", 'f', 2, 0) || get(o[7], cls, "cls", 'n', 2, 0) ||
        get(o[8], area, "area", 'f', 1, 0) || get(o[9], done, "done", 'b', 1, 1) ||
        get(o[10], totals, "totals", 'f', 2, 1) || get(o[11], moments, "moments", 'f', 2, 1) ||
        get(o[12], class_w, "class_w", 'f', 2, 1))
        goto fail;
    Py_ssize_t n_rings = dim(sign, 0), n = dim(gfirst, 0) - 1;
    Py_ssize_t h = dim(valid, 0), w = dim(valid, 1);
    int sizes_ok =
        n >= 0 && dim(x, 0) == dim(y, 0) && dim(first, 0) == n_rings + 1 &&
        dim(area, 0) == h && dim(done, 0) == n && dim(totals, 0) == 4 &&
        dim(totals, 1) == n && dim(moments, 0) == 4 && dim(moments, 1) == n &&
        n_cls >= 0 && max_cells >= 0 &&
        (n_cls ? dim(cls, 0) == h && dim(cls, 1) == w && dim(class_w, 0) == n &&
                     dim(class_w, 1) == n_cls + 1
               : dim(centred, 0) == h && dim(centred, 1) == w);
    if (!sizes_ok) {
        PyErr_SetString(PyExc_ValueError, "inconsistent sizes");
        goto fail;
    }
    if (!offsets_ok(first->view.buf, n_rings + 1, dim(x, 0), "ring_first") ||
        !offsets_ok(gfirst->view.buf, n + 1, n_rings, "geom_first"))
        goto fail;
    const double *px = x->view.buf, *py = y->view.buf, *psign = sign->view.buf;
    const int64_t *pfirst = first->view.buf, *pg = gfirst->view.buf;
    uint8_t *pdone = done->view.buf;
    Sums s = {valid->view.buf, centred->view.buf, area->view.buf, cls->view.buf,
              h, w, n_cls, n, eps, totals->view.buf, moments->view.buf,
              class_w->view.buf, 0};
    int no_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    double *scratch = NULL;
    int64_t scratch_size = 0;
    for (int64_t g = 0; g < n; g++) {
        int64_t ring_a = pg[g], ring_b = pg[g + 1];
        if (ring_a == ring_b) { /* nothing inside the grid */
            pdone[g] = 1;
            continue;
        }
        Box b;
        if (!polygon_box(px, py, pfirst[ring_a], pfirst[ring_b], (double)max_cells, &b))
            continue;
        int64_t cells = b.rows * b.cols;
        if (cells > scratch_size) {
            int64_t size = cells > 2 * scratch_size ? cells : 2 * scratch_size;
            double *grown = realloc(scratch, (size_t)size * sizeof(double));
            if (!grown) {
                no_memory = 1;
                break;
            }
            scratch = grown;
            scratch_size = size;
        }
        memset(scratch, 0, (size_t)cells * sizeof(double));
        b.data = scratch;
        accumulate(&b, px, py, pfirst, psign, ring_a, ring_b);
        sum_box(&b, g, &s, 0.0, 0);
        if (spread && s.totals[n + g] > 0) /* a second pass: no cancellation */
            sum_box(&b, g, &s, s.moments[g] / s.totals[n + g], 1);
        pdone[g] = 1;
    }
    free(scratch);
    Py_END_ALLOW_THREADS
    if (no_memory) {
        PyErr_NoMemory();
        goto fail;
    }
    if (s.bad_class) {
        PyErr_Format(PyExc_ValueError, "cls holds an index outside [0, %lld]", n_cls);
        goto fail;
    }
    release(bufs, 13);
    Py_RETURN_NONE;
fail:
    release(bufs, 13);
    return NULL;
}

/* ---- module ---------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"accumulate_polygon", accumulate_polygon, METH_VARARGS, accumulate_polygon_doc},
    {"polygon_totals", polygon_totals, METH_VARARGS, polygon_totals_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tessellum._kernels",
    "Compiled loops: exact polygon coverage and zonal sums (see _kernels.c).", 0, methods,
    slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModuleDef_Init(&module); }
