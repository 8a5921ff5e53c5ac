#ifndef DIFFUSIONRL_CHDF5_SHIM_H
#define DIFFUSIONRL_CHDF5_SHIM_H
#include <hdf5.h>

// HDF5's constants are macros over globals that are only valid after H5open(); Swift cannot
// import them whole (and Swift 6 rejects the globals as not concurrency-safe), so each one the
// project needs is wrapped in a function here.
static inline hid_t chdf5_native_float(void) { H5open(); return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_native_double(void) { H5open(); return H5T_NATIVE_DOUBLE; }
static inline hid_t chdf5_native_int64(void) { H5open(); return H5T_NATIVE_INT64; }
static inline hid_t chdf5_native_int32(void) { H5open(); return H5T_NATIVE_INT32; }
static inline hid_t chdf5_native_uint8(void) { H5open(); return H5T_NATIVE_UINT8; }
static inline hid_t chdf5_c_s1(void) { H5open(); return H5T_C_S1; }
static inline hid_t chdf5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t chdf5_p_dataset_create(void) { H5open(); return H5P_DATASET_CREATE; }
static inline hid_t chdf5_p_file_access(void) { H5open(); return H5P_FILE_ACCESS; }
static inline hid_t chdf5_p_file_create(void) { H5open(); return H5P_FILE_CREATE; }
static inline hid_t chdf5_s_all(void) { return H5S_ALL; }
static inline hsize_t chdf5_s_unlimited(void) { return H5S_UNLIMITED; }
static inline unsigned chdf5_f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned chdf5_f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned chdf5_f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline unsigned chdf5_f_acc_swmr_read(void) { return H5F_ACC_SWMR_READ; }
static inline unsigned chdf5_f_acc_swmr_write(void) { return H5F_ACC_SWMR_WRITE; }
static inline hid_t chdf5_e_default(void) { return H5E_DEFAULT; }
static inline H5F_libver_t chdf5_libver_latest(void) { return H5F_LIBVER_LATEST; }
/* Silences HDF5's own error-stack printing: the library reports errors in one line itself. */
static inline void chdf5_silence_errors(void) { H5open(); H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
#endif
