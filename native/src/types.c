/* Static facts about every encoding id: names and block geometry as ggml defines them. */
#include "internal.h"

static const qt_type_desc k_types[QT_TYPE_MAX] = {
    [QT_T_F32] = {"F32", 1, 4, 0},
    [QT_T_F16] = {"F16", 1, 2, 0},
    [QT_T_Q4_0] = {"Q4_0", 32, 18, 1},
    [QT_T_Q4_1] = {"Q4_1", 32, 20, 1},
    [QT_T_Q5_0] = {"Q5_0", 32, 22, 1},
    [QT_T_Q5_1] = {"Q5_1", 32, 24, 1},
    [QT_T_Q8_0] = {"Q8_0", 32, 34, 0},
    [QT_T_Q8_1] = {"Q8_1", 32, 36, 0},
    [QT_T_Q2_K] = {"Q2_K", 256, 84, 1},
    [QT_T_Q3_K] = {"Q3_K", 256, 110, 1},
    [QT_T_Q4_K] = {"Q4_K", 256, 144, 1},
    [QT_T_Q5_K] = {"Q5_K", 256, 176, 1},
    [QT_T_Q6_K] = {"Q6_K", 256, 210, 1},
    [QT_T_Q8_K] = {"Q8_K", 256, 292, 0},
    [QT_T_IQ4_NL] = {"IQ4_NL", 32, 18, 1},
    [QT_T_IQ4_XS] = {"IQ4_XS", 256, 136, 1},
    [QT_T_BF16] = {"BF16", 1, 2, 0},
    [QT_T_TQ1_0] = {"TQ1_0", 256, 54, 0},
    [QT_T_TQ2_0] = {"TQ2_0", 256, 66, 0},
    [QT_T_MXFP4] = {"MXFP4", 32, 17, 0},
};

const qt_type_desc *qt_type_desc_get(int32_t type_id) {
    if (type_id < 0 || type_id >= QT_TYPE_MAX || k_types[type_id].name == NULL) {
        return NULL;
    }
    return &k_types[type_id];
}
