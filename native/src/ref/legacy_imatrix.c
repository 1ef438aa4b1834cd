#include "../internal.h"
#include "legacy.h"
void qt_ref_quantize_q4_0_imatrix(const float *x, void *y, int64_t n, const float *qw) { (void)qw; qt_ref_quantize_q4_0_plain(x, y, n); }
void qt_ref_quantize_q4_1_imatrix(const float *x, void *y, int64_t n, const float *qw) { (void)qw; qt_ref_quantize_q4_1_plain(x, y, n); }
void qt_ref_quantize_q5_0_imatrix(const float *x, void *y, int64_t n, const float *qw) { (void)qw; qt_ref_quantize_q5_0_plain(x, y, n); }
void qt_ref_quantize_q5_1_imatrix(const float *x, void *y, int64_t n, const float *qw) { (void)qw; qt_ref_quantize_q5_1_plain(x, y, n); }
