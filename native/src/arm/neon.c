#include "../internal.h"
void qt_neon_register(qt_kernel_table *t) { (void)t; }
