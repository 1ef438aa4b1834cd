#include "../internal.h"
void qt_ref_register_iq(qt_kernel_table *t) { (void)t; }
