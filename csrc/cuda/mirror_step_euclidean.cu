// The CUDA step and stale-means kernels of the Euclidean map (plain gradient descent).
#include "mirror_step_kernels.cuh"

MIRRORFLOW_INSTANTIATE_MAP_KERNELS(mirrorflow::core::MirrorKind::Euclidean);
