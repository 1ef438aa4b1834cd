#include "../internal.h"
void qt_avx2_register(qt_kernel_table *t) { (void)t; }
