/* The two per-frame FIR resamplers in C, for the hot path (resample.py has the
 * numpy versions, which stay as the reference and the fallback).
 *
 * numpy costs ~10 calls per 20 ms frame each way, and in a busy server those
 * small calls cost three times what they do in a tight loop. Here each
 * direction is one call. Same filters, same state layout (the filter's float32
 * history at the front of the caller's buffer), same rounding (to nearest,
 * ties to even) and clipping; sums run over the taps in the same order, so
 * results match numpy's to within one LSB of float rounding.
 *
 * Like websockets' speedups.c: optional at build time; without a compiler the
 * bridge runs the numpy code.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define BLOCK 8 /* outputs computed together: independent sums the CPU can overlap */

static inline int16_t to_int16(float value)
{
    float r = nearbyintf(value); /* default rounding mode: to nearest, ties to even */
    if (r > 32767.0f) return 32767;
    if (r < -32768.0f) return -32768;
    return (int16_t)r;
}

static inline void store_le16(char *out, int16_t value)
{
    uint16_t u = (uint16_t)value;
    out[0] = (char)(u & 0xff);
    out[1] = (char)(u >> 8);
}

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
        char *out = PyBytes_AS_STRING(result);
        Py_ssize_t i = 0;
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
    samples = PyBytes_FromStringAndSize(NULL, 2 * count);
    if (samples != NULL) {
        char *out = PyBytes_AS_STRING(samples);
        Py_ssize_t k = 0;
        for (; k + BLOCK <= count; k += BLOCK) {
            float acc[BLOCK] = {0};
            const float *base = x + phase + 3 * k;
            for (Py_ssize_t t = 0; t < width; t++) {
                const float ht = h[t];
                for (int b = 0; b < BLOCK; b++) acc[b] += base[3 * b + t] * ht;
            }
            for (int b = 0; b < BLOCK; b++) store_le16(out + 2 * (k + b), to_int16(acc[b]));
        }
        for (; k < count; k++) {
            float acc = 0;
            const float *base = x + phase + 3 * k;
            for (Py_ssize_t t = 0; t < width; t++) acc += base[t] * h[t];
            store_le16(out + 2 * k, to_int16(acc));
        }
        memcpy(history, x + n, (size_t)keep * sizeof(float));
        Py_ssize_t next = (phase - n) % 3;
        result = Py_BuildValue("(Nn)", samples, next < 0 ? next + 3 : next);
    }
    PyMem_Free(x);
done:
    PyBuffer_Release(&pcm);
    PyBuffer_Release(&state);
    PyBuffer_Release(&taps);
    return result;
}

static PyMethodDef methods[] = {
    {"upsample2", upsample2, METH_VARARGS, "8 -> 16 kHz: one chunk through the polyphase FIR."},
    {"downsample3", downsample3, METH_VARARGS, "24 -> 8 kHz: one chunk through the FIR."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bridge.audio._speedups", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
