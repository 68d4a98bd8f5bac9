/// The smoothed homogeneous ("power") potential (MATH.md §1), degree L.
#pragma once

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

/// φ(x) = ((x²+β²)^{L/2} − β^L)/L with L > 1 and β >= 0.
///
/// L = 2 is the Euclidean potential for every β and is evaluated with the
/// Euclidean formulas, so that `power` with L = 2 equals `euclidean` exactly.
/// β = 0 is the homogeneous potential |x|^L/L, evaluated in closed form.
template <class T>
struct PowerPotential {
  using scalar = T;
  T L;
  T beta;

  MF_INLINE T degree() const { return L; }
  MF_INLINE bool is_quadratic() const { return L == T(2); }

  /// φ(x); (x²+β²)^{L/2} − β^L is written β^L·expm1((L/2)·log1p(x²/β²)) to
  /// avoid cancellation for |x| ≪ β.
  template <class V>
  MF_INLINE V potential(V x) const {
    using O = Ops<V>;
    if (is_quadratic()) return V(0.5) * x * x;
    if (beta == T(0)) return O::pow(O::abs(x), V(L)) / V(L);
    const V q = x / V(beta);
    const T beta_l = Ops<T>::pow(beta, L);
    return V(beta_l) * O::expm1(V(L / 2) * O::log1p(q * q)) / V(L);
  }

  /// ∇φ(x) = x·(x²+β²)^{L/2−1} (β = 0: sign(x)|x|^{L−1}).
  template <class V>
  MF_INLINE V grad(V x) const {
    using O = Ops<V>;
    if (is_quadratic()) return x;
    if (beta == T(0)) return with_sign_of(x, O::pow(O::abs(x), V(L - 1)));
    const V b(beta);
    return x * O::pow(O::fma(x, x, b * b), V(L / 2 - 1));
  }

  /// 1/φ''(x) = (x²+β²)^{2−L/2} / ((L−1)x²+β²)  (β = 0: |x|^{2−L}/(L−1)).
  template <class V>
  MF_INLINE V inv_metric(V x) const {
    using O = Ops<V>;
    if (is_quadratic()) return V(1);
    if (beta == T(0)) return O::pow(O::abs(x), V(2 - L)) / V(L - 1);
    const V b2 = V(beta) * V(beta);
    const V x2 = x * x;
    return O::pow(x2 + b2, V(2 - L / 2)) / O::fma(V(L - 1), x2, b2);
  }

  /// φ*(∇φ(x)) = x·∇φ(x) − φ(x).
  template <class V>
  MF_INLINE V conj_of_grad(V x) const {
    return x * grad(x) - potential(x);
  }

  /// ∇φ*(y): closed form for β = 0, otherwise the safeguarded Newton solve
  /// started from the β = 0 solution.
  template <class V>
  MF_INLINE V grad_conj(V y) const {
    using O = Ops<V>;
    if (is_quadratic()) return y;
    const V mag = O::pow(O::abs(y), V(T(1) / (L - 1)));
    if (beta == T(0)) return with_sign_of(y, mag);
    return with_sign_of(y, solve_magnitude(O::abs(y), mag));
  }

  /// ∇φ*(∇φ(x) + s·g) (MATH.md §2, dual update).
  template <class V>
  MF_INLINE V dual_step(V x, V g, V s) const {
    using O = Ops<V>;
    if (is_quadratic()) return O::fma(g, s, x);
    const V y = O::fma(g, s, grad(x));
    if (beta == T(0)) return with_sign_of(y, O::pow(O::abs(y), V(T(1) / (L - 1))));
    return with_sign_of(y, solve_magnitude(O::abs(y), O::abs(x)));
  }

  /// Solves u·(u²+β²)^{(L−2)/2} = a for u >= 0 (β > 0) by Newton's method
  /// started at `u0`, kept inside a bracket [lo, hi] that always holds the
  /// root: a step that would leave it bisects instead. Stops when the relative
  /// change is below 2ε of the type. Scalar types only.
  ///
  /// The bracket: F(u) = u(u²+β²)^{(L−2)/2} − a is increasing, F(0) = −a ≤ 0,
  /// and F(max(β, (2a)^{1/(L−1)})) ≥ 0 for every L > 1.
  MF_INLINE T solve_magnitude(T a, T u0, int* iterations = nullptr) const {
    using O = Ops<T>;
    if (iterations) *iterations = 0;
    if (!(a > T(0))) return a == T(0) ? T(0) : a;  // 0, or NaN through
    const T b2 = beta * beta;
    const T half_l = L / 2 - 1;
    T lo = T(0);
    T hi = O::pow(T(2) * a, T(1) / (L - 1));
    if (hi < beta) hi = beta;
    if (!(hi <= std::numeric_limits<T>::max())) hi = std::numeric_limits<T>::max();
    T u = (u0 > lo && u0 < hi) ? u0 : T(0.5) * hi;
    const T tol = T(2) * epsilon_of<T>();
    for (int it = 1; it <= kMaxIterations; ++it) {
      if (iterations) *iterations = it;
      const T s = O::fma(u, u, b2);
      const T p = O::pow(s, half_l);
      const T f = u * p - a;
      if (f == T(0)) return u;
      if (f < T(0)) {
        lo = u;
      } else {
        hi = u;
      }
      // F'(u) = φ''(u) = (u²+β²)^{L/2−2}·((L−1)u²+β²) = p·((L−1)u²+β²)/s.
      const T fp = p * O::fma(L - 1, u * u, b2) / s;
      T next = u - f / fp;
      // A Newton step this small means u is the root up to rounding (checked
      // before the safeguard: the bracket may already have closed onto u).
      if (O::abs(next - u) <= tol * u) return next;
      if (!(next > lo && next < hi)) next = lo + T(0.5) * (hi - lo);
      u = next;
    }
    return u;
  }

  static constexpr int kMaxIterations = 100;
};

}  // namespace mirrorflow::core
