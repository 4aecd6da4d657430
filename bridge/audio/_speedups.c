/* The two per-frame FIR resamplers and the μ-law encoder in C, for the hot path
 * (resample.py has the numpy versions and mulaw.py audioop's, which stay as the
 * reference and the fallback).
 *
 * numpy needs ten small calls per 20 ms frame each way, whose fixed cost dwarfs
 * the arithmetic at this size; here each direction is one call. Same filters, same
 * state layout (the filter's float32 history at the front of the caller's buffer),
 * same rounding (to nearest, ties to even) and clipping; sums run over the taps in
 * the same order, so results match numpy's to within one LSB of float rounding.
 *
 * Two tiers, each kept because a measurement showed it pays (docs/performance.md,
 * "The C extension"): SSE2, every x86-64 CPU's baseline, and portable C for the
 * rest. An AVX tier was measured too and removed: it saved too little of a call's
 * work to be seen in the benchmark.
 *
 * Like websockets' speedups.c: optional at build time; without a compiler the
 * bridge runs the numpy code.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define HAVE_SSE2 1 /* every x86-64 CPU */
#endif

#define BLOCK 8 /* outputs computed together: independent sums the CPU can overlap */

static inline int16_t to_int16(float value)
{
#if HAVE_SSE2
    /* cvtss2si rounds as nearbyintf does (to nearest, ties to even) in one instruction;
     * nearbyintf itself is a libm call per sample unless SSE4.1 is assumed. */
    if (value >= 32767.0f) return 32767;
    if (value <= -32768.0f) return -32768;
    return (int16_t)_mm_cvtss_si32(_mm_set_ss(value));
#else
    float r = nearbyintf(value); /* default rounding mode: to nearest, ties to even */
    if (r > 32767.0f) return 32767;
    if (r < -32768.0f) return -32768;
    return (int16_t)r;
#endif
}

static inline void store_le16(char *out, int16_t value)
{
    uint16_t u = (uint16_t)value;
    out[0] = (char)(u & 0xff);
    out[1] = (char)(u >> 8);
}

#if HAVE_SSE2
/* Eight floats → eight PCM16 LE samples, rounded and clipped exactly as to_int16: cvtps2dq
 * rounds to nearest, ties to even, and the saturating pack clips to int16's range (the
 * filters' sums stay far inside int32's, where cvtps2dq would overflow). */
static inline void store_pcm16x8(char *out, __m128 low, __m128 high)
{
    __m128i packed = _mm_packs_epi32(_mm_cvtps_epi32(low), _mm_cvtps_epi32(high));
    _mm_storeu_si128((__m128i *)out, packed);
}
#endif

/* history ++ new PCM16 LE samples, as floats, in a scratch buffer. */
static float *load(const float *history, Py_ssize_t keep, const unsigned char *pcm, Py_ssize_t n)
{
    float *x = PyMem_Malloc((size_t)(keep + n) * sizeof(float));
    if (x == NULL) return NULL;
    memcpy(x, history, (size_t)keep * sizeof(float));
    for (Py_ssize_t i = 0; i < n; i++) {
        x[keep + i] = (float)(int16_t)(uint16_t)(pcm[2 * i] | (pcm[2 * i + 1] << 8));
    }
    return x;
}

static int check_float_buffer(Py_buffer *buffer, Py_ssize_t floats, const char *what)
{
    if (buffer->len < floats * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "%s holds fewer than %zd float32 values", what, floats);
        return -1;
    }
    return 0;
}

/* x: the history and then n new samples; out: 2n PCM16 LE samples. */
static void upsample2_kernel(
    const float *x, const float *h, Py_ssize_t width, Py_ssize_t n, char *out)
{
    Py_ssize_t i = 0;
#if HAVE_SSE2
    /* Sixteen inputs at a time, four to a register: the same products and sums, lane by
     * lane, as the loop below (no FMA on baseline x86-64), so the same results. Eight
     * sums in flight, not four: each add waits for the one before it on its register,
     * so with fewer the loop waits on that latency rather than on the arithmetic. */
    for (; i + 16 <= n; i += 16) {
        __m128 even[4], odd[4];
        for (int r = 0; r < 4; r++) even[r] = odd[r] = _mm_setzero_ps();
        for (Py_ssize_t t = 0; t < width; t++) {
            const __m128 h0 = _mm_set1_ps(h[2 * t]), h1 = _mm_set1_ps(h[2 * t + 1]);
            for (int r = 0; r < 4; r++) {
                const __m128 xr = _mm_loadu_ps(x + i + t + 4 * r);
                even[r] = _mm_add_ps(even[r], _mm_mul_ps(xr, h0));
                odd[r] = _mm_add_ps(odd[r], _mm_mul_ps(xr, h1));
            }
        }
        for (int r = 0; r < 4; r++) {
            store_pcm16x8(out + 4 * (i + 4 * r), _mm_unpacklo_ps(even[r], odd[r]),
                _mm_unpackhi_ps(even[r], odd[r]));
        }
    }
#endif
    for (; i + BLOCK <= n; i += BLOCK) {
        float even[BLOCK] = {0}, odd[BLOCK] = {0};
        for (Py_ssize_t t = 0; t < width; t++) {
            const float h0 = h[2 * t], h1 = h[2 * t + 1];
            const float *xt = x + i + t;
            for (int b = 0; b < BLOCK; b++) {
                even[b] += xt[b] * h0;
                odd[b] += xt[b] * h1;
            }
        }
        for (int b = 0; b < BLOCK; b++) {
            store_le16(out + 4 * (i + b), to_int16(even[b]));
            store_le16(out + 4 * (i + b) + 2, to_int16(odd[b]));
        }
    }
    for (; i < n; i++) {
        float even = 0, odd = 0;
        for (Py_ssize_t t = 0; t < width; t++) {
            even += x[i + t] * h[2 * t];
            odd += x[i + t] * h[2 * t + 1];
        }
        store_le16(out + 4 * i, to_int16(even));
        store_le16(out + 4 * i + 2, to_int16(odd));
    }
}

/* x: the history and then the new samples, split into its three phases (planes[r][j]
 * is x[3j + r]); out: count PCM16 LE samples, one per three inputs from x[phase].
 * Output k + b sums x[phase + 3(k + b) + t] * h[t] over t; for a given t those inputs
 * sit side by side in one plane, so a block of outputs is a few vector operations per
 * tap (x itself would need a gather at stride 3). Same sums in the same order. */
static void downsample3_kernel(float *const planes[3], const float **taps_in,
    const float *h, Py_ssize_t width, Py_ssize_t phase, Py_ssize_t count, char *out)
{
    /* taps_in[t]: where output 0's input for tap t sits in its plane */
    for (Py_ssize_t t = 0; t < width; t++) {
        taps_in[t] = planes[(phase + t) % 3] + (phase + t) / 3;
    }
    Py_ssize_t k = 0;
#if HAVE_SSE2
    /* As upsample2_kernel's: the loop below, four lanes, eight sums in flight. */
    for (; k + 32 <= count; k += 32) {
        __m128 acc[8];
        for (int r = 0; r < 8; r++) acc[r] = _mm_setzero_ps();
        for (Py_ssize_t t = 0; t < width; t++) {
            const float *in = taps_in[t] + k;
            const __m128 ht = _mm_set1_ps(h[t]);
            for (int r = 0; r < 8; r++) {
                acc[r] = _mm_add_ps(acc[r], _mm_mul_ps(_mm_loadu_ps(in + 4 * r), ht));
            }
        }
        for (int r = 0; r < 8; r += 2) store_pcm16x8(out + 2 * (k + 4 * r), acc[r], acc[r + 1]);
    }
#endif
    for (; k + BLOCK <= count; k += BLOCK) {
        float acc[BLOCK] = {0};
        for (Py_ssize_t t = 0; t < width; t++) {
            const float *in = taps_in[t] + k;
            const float ht = h[t];
            for (int b = 0; b < BLOCK; b++) acc[b] += in[b] * ht;
        }
        for (int b = 0; b < BLOCK; b++) store_le16(out + 2 * (k + b), to_int16(acc[b]));
    }
    for (; k < count; k++) {
        float acc = 0;
        for (Py_ssize_t t = 0; t < width; t++) acc += taps_in[t][k] * h[t];
        store_le16(out + 2 * k, to_int16(acc));
    }
}

/* upsample2(pcm8k, state, phases) -> pcm16k
 * phases: float32 [width][2], reversed taps of the two polyphase branches;
 * state: float32 buffer whose first width-1 values are the input history (updated). */
static PyObject *upsample2(PyObject *self, PyObject *args)
{
    Py_buffer pcm, state, phases;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*w*y*", &pcm, &state, &phases)) return NULL;
    Py_ssize_t width = phases.len / (Py_ssize_t)(2 * sizeof(float));
    Py_ssize_t keep = width - 1;
    Py_ssize_t n = pcm.len / 2;
    if (width < 1 || check_float_buffer(&state, keep, "state") < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no taps");
        goto done;
    }
    float *history = (float *)state.buf;
    const float *h = (const float *)phases.buf;
    float *x = load(history, keep, (const unsigned char *)pcm.buf, n);
    if (x == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, 4 * n);
    if (result != NULL) {
        upsample2_kernel(x, h, width, n, PyBytes_AS_STRING(result));
        memcpy(history, x + n, (size_t)keep * sizeof(float));
    }
    PyMem_Free(x);
done:
    PyBuffer_Release(&pcm);
    PyBuffer_Release(&state);
    PyBuffer_Release(&phases);
    return result;
}

/* downsample3(pcm24k, state, taps, phase) -> (pcm8k, next_phase)
 * taps: float32, reversed; state: float32 buffer whose first len(taps)-1 values are
 * the input history (updated); phase: input samples to skip before the next output. */
static PyObject *downsample3(PyObject *self, PyObject *args)
{
    Py_buffer pcm, state, taps;
    Py_ssize_t phase;
    PyObject *result = NULL, *samples = NULL;
    if (!PyArg_ParseTuple(args, "y*w*y*n", &pcm, &state, &taps, &phase)) return NULL;
    Py_ssize_t width = taps.len / (Py_ssize_t)sizeof(float);
    Py_ssize_t keep = width - 1;
    Py_ssize_t n = pcm.len / 2;
    if (width < 1 || phase < 0 || phase > 2 || check_float_buffer(&state, keep, "state") < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no taps, or phase not 0-2");
        goto done;
    }
    float *history = (float *)state.buf;
    const float *h = (const float *)taps.buf;
    float *x = load(history, keep, (const unsigned char *)pcm.buf, n);
    if (x == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t count = phase < n ? (n - phase + 2) / 3 : 0;
    Py_ssize_t plane = (keep + n + 2) / 3;
    float *split = PyMem_Malloc((size_t)(3 * plane) * sizeof(float) + (size_t)width * sizeof(float *));
    if (split == NULL) {
        PyMem_Free(x);
        PyErr_NoMemory();
        goto done;
    }
    float *const planes[3] = {split, split + plane, split + 2 * plane};
    Py_ssize_t j = 0;
    for (; 3 * j + 2 < keep + n; j++) {
        planes[0][j] = x[3 * j];
        planes[1][j] = x[3 * j + 1];
        planes[2][j] = x[3 * j + 2];
    }
    for (Py_ssize_t r = 0; 3 * j + r < keep + n; r++) planes[r][j] = x[3 * j + r];
    samples = PyBytes_FromStringAndSize(NULL, 2 * count);
    if (samples != NULL) {
        const float **taps_in = (const float **)(split + 3 * plane);
        downsample3_kernel(planes, taps_in, h, width, phase, count, PyBytes_AS_STRING(samples));
        memcpy(history, x + n, (size_t)keep * sizeof(float));
        Py_ssize_t next = (phase - n) % 3;
        result = Py_BuildValue("(Nn)", samples, next < 0 ? next + 3 : next);
    }
    PyMem_Free(split);
    PyMem_Free(x);
done:
    PyBuffer_Release(&pcm);
    PyBuffer_Release(&state);
    PyBuffer_Release(&taps);
    return result;
}

/* G.711 μ-law of PCM16 by table: audioop searches the segment per sample, whose branches
 * the CPU mispredicts on real audio (though not on one frame repeated in a loop). The
 * table holds audioop's own results for the top 14 bits, all audioop looks at. */
static unsigned char ULAW_OF[1 << 14];

/* audioop's st_14linear2ulaw, used once per entry to fill the table. */
static unsigned char ulaw_of_14bit(int pcm_val)
{
    static const int seg_uend[8] = {0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF};
    int mask = 0xFF, seg = 0;
    if (pcm_val < 0) {
        pcm_val = -pcm_val;
        mask = 0x7F;
    }
    if (pcm_val > 8159) pcm_val = 8159; /* CLIP */
    pcm_val += 0x84 >> 2;               /* BIAS */
    while (seg < 8 && pcm_val > seg_uend[seg]) seg++;
    if (seg >= 8) return (unsigned char)(0x7F ^ mask);
    return (unsigned char)(((seg << 4) | ((pcm_val >> (seg + 1)) & 0xF)) ^ mask);
}

/* lin2ulaw(pcm16) -> ulaw: one byte per PCM16 LE sample, as audioop.lin2ulaw(pcm, 2). */
static PyObject *lin2ulaw(PyObject *self, PyObject *arg)
{
    Py_buffer pcm;
    PyObject *result = NULL;
    if (PyObject_GetBuffer(arg, &pcm, PyBUF_SIMPLE) < 0) return NULL;
    if (pcm.len % 2) {
        PyErr_SetString(PyExc_ValueError, "PCM16 of an odd number of bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, pcm.len / 2);
    if (result != NULL) {
        const unsigned char *in = (const unsigned char *)pcm.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        for (Py_ssize_t i = 0; i < pcm.len / 2; i++) {
            out[i] = ULAW_OF[(in[2 * i] | (in[2 * i + 1] << 8)) >> 2];
        }
    }
done:
    PyBuffer_Release(&pcm);
    return result;
}

static PyMethodDef methods[] = {
    {"upsample2", upsample2, METH_VARARGS, "8 -> 16 kHz: one chunk through the polyphase FIR."},
    {"downsample3", downsample3, METH_VARARGS, "24 -> 8 kHz: one chunk through the FIR."},
    {"lin2ulaw", lin2ulaw, METH_O, "PCM16 LE -> G.711 mu-law, as audioop.lin2ulaw(pcm, 2)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.audio._speedups", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    for (int i = 0; i < (1 << 14); i++) {
        ULAW_OF[i] = ulaw_of_14bit((int16_t)(uint16_t)(i << 2) >> 2);
    }
    return PyModule_Create(&module);
}
