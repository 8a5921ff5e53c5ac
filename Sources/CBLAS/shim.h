#ifndef DIFFUSIONRL_CBLAS_SHIM_H
#define DIFFUSIONRL_CBLAS_SHIM_H
#include <cblas.h>
#endif
