// The CUDA step and stale-means kernels of the power map.
#include "mirror_step_kernels.cuh"

MIRRORFLOW_INSTANTIATE_MAP_KERNELS(mirrorflow::core::MirrorKind::Power);
