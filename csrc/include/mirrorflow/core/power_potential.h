/// The smoothed homogeneous ("power") potential (MATH.md §1), degree L.
#pragma once

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

/// φ(x) = ((x²+β²)^{L/2} − β^L)/L with L > 1 and β >= 0.
///
/// L = 2 is the Euclidean potential for every β and is evaluated with the
/// Euclidean formulas, so that `power` with L = 2 equals `euclidean` exactly.
/// β = 0 is the homogeneous potential |x|^L/L, evaluated in closed form.
///
/// `kCubic`: L = 3 and β > 0, the case of the experiments, known when the code
/// is compiled (the CPU kernel checks it once per work item), so that the
/// per-element code tests neither L nor β; the values are the same bits.
template <class T, bool kCubic = false>
struct PowerPotential {
  using scalar = T;
  T L;
  T beta;
  // Derived from L and β (default member initialisers run after them, in order).
  T beta_sq = beta * beta;
  /// L = 3: the exponents 2 − L/2, L/2 − 1 and 1/(L−1) are then all 1/2, and
  /// what is raised to them is >= 0 (or NaN), so `power` takes the correctly
  /// rounded √ without testing the exponent per element.
  bool sqrt_powers = kCubic || L == T(3);

  /// q^e for q >= 0 (or NaN), e one of the exponents above; `floor`, a lower
  /// bound of q (β² for q = x²+β²), spares the √ a test (Ops::sqrt_above).
  template <class V>
  MF_INLINE V power(V q, T e, T floor = T(0)) const {
    if constexpr (kCubic) return Ops<V>::sqrt_above(q, floor);
    return sqrt_powers ? Ops<V>::sqrt_above(q, floor) : Ops<V>::pow(q, V(e));
  }

  MF_INLINE T degree() const { return L; }
  MF_INLINE bool is_quadratic() const { return !kCubic && L == T(2); }
  /// β = 0: |x|^L/L.
  MF_INLINE bool homogeneous() const { return !kCubic && beta == T(0); }
  /// L − 1, the factor of x² in φ''.
  MF_INLINE T l_minus_1() const { return kCubic ? T(2) : L - T(1); }

  /// φ(x); (x²+β²)^{L/2} − β^L is written β^L·expm1((L/2)·log1p(x²/β²)) to
  /// avoid cancellation for |x| ≪ β.
  template <class V>
  MF_INLINE V potential(V x) const {
    using O = Ops<V>;
    if (is_quadratic()) return V(0.5) * x * x;
    if (homogeneous()) return O::pow(O::abs(x), V(L)) / V(L);
    const V q = x / V(beta);
    const T beta_l = Ops<T>::pow(beta, L);
    return V(beta_l) * O::expm1(V(L / 2) * O::log1p(q * q)) / V(L);
  }

  /// ∇φ(x) = x·(x²+β²)^{L/2−1} (β = 0: sign(x)|x|^{L−1}).
  template <class V>
  MF_INLINE V grad(V x) const {
    using O = Ops<V>;
    if (is_quadratic()) return x;
    if (homogeneous()) return with_sign_of(x, O::pow(O::abs(x), V(l_minus_1())));
    return x * power(O::fma(x, x, V(beta_sq)), L / 2 - 1, beta_sq);
  }

  /// 1/φ''(x) = (x²+β²)^{2−L/2} / ((L−1)x²+β²)  (β = 0: |x|^{2−L}/(L−1)).
  template <class V>
  MF_INLINE V inv_metric(V x) const {
    using O = Ops<V>;
    if (is_quadratic()) return V(1);
    if (homogeneous()) return O::pow(O::abs(x), V(2 - L)) / V(l_minus_1());
    V q;
    V r;
    inv_metric_parts(x, q, r);
    return inv_metric_numerator(q) / r;
  }

  /// Whether inv_metric is the fraction n/r below (β > 0 and L ≠ 2).
  MF_INLINE bool inv_metric_is_fraction() const { return !is_quadratic() && !homogeneous(); }
  /// That fraction's q = x²+β² and denominator r = (L−1)x²+β²; its numerator
  /// is n = inv_metric_numerator(q) = q^{2−L/2}.
  template <class V>
  MF_INLINE void inv_metric_parts(V x, V& q, V& r) const {
    const V b2(beta_sq);
    const V x2 = x * x;
    q = V(x2 + b2);
    r = Ops<V>::fma(V(l_minus_1()), x2, b2);
  }
  template <class V>
  MF_INLINE V inv_metric_numerator(V q) const {
    return power(q, 2 - L / 2, beta_sq);
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
    const V mag = power(O::abs(y), T(1) / l_minus_1());
    if (homogeneous()) return with_sign_of(y, mag);
    return with_sign_of(y, solve_magnitude(O::abs(y), mag));
  }

  /// ∇φ*(∇φ(x) + s·g) (MATH.md §2, dual update).
  template <class V>
  MF_INLINE V dual_step(V x, V g, V s) const {
    using O = Ops<V>;
    if (is_quadratic()) return O::fma(g, s, x);
    const V y = O::fma(g, s, grad(x));
    if (homogeneous()) return with_sign_of(y, power(O::abs(y), T(1) / l_minus_1()));
    return with_sign_of(y, solve_magnitude(O::abs(y), O::abs(x)));
  }

  /// Solves u·(u²+β²)^{(L−2)/2} = a for u >= 0 (β > 0) by Newton's method
  /// started at `u0`, kept inside a bracket [lo, hi] that always holds the
  /// root: a step that would leave it bisects instead. Stops when the relative
  /// change is below 2ε of the type.
  ///
  /// The bracket: F(u) = u(u²+β²)^{(L−2)/2} − a is increasing, F(0) = −a ≤ 0,
  /// and F(max(β, (2a)^{1/(L−1)})) ≥ 0 for every L > 1.
  ///
  /// Written with masks so that it also runs lane-wise on SIMD vectors: each
  /// lane keeps the value at which the scalar loop would have returned, and the
  /// loop ends when every lane has (`iterations`: the iterations run).
  template <class V>
  MF_INLINE V solve_magnitude(V a, V u0, int* iterations = nullptr) const {
    using O = Ops<V>;
    using M = typename O::mask;
    if (iterations) *iterations = 0;
    const V zero(T(0));
    const V b2(beta_sq);
    // a = 0 gives 0 and NaN passes through; such lanes are done at once.
    M done = O::lnot(O::lt(zero, a));
    V result = O::select(O::eq(a, zero), zero, a);
    if (O::all(done)) return result;
    V lo = zero;
    V hi = power(V(T(2)) * a, T(1) / l_minus_1());
    hi = O::select(O::lt(hi, V(beta)), V(beta), hi);
    hi = O::select(O::le(hi, V(std::numeric_limits<T>::max())), hi,
                   V(std::numeric_limits<T>::max()));
    V u = O::select(O::land(O::lt(lo, u0), O::lt(u0, hi)), u0, V(T(0.5)) * hi);
    const V tol(T(2) * epsilon_of<T>());
    for (int it = 1; it <= kMaxIterations; ++it) {
      if (iterations) *iterations = it;
      const V s = O::fma(u, u, b2);
      const V p = power(s, L / 2 - 1, beta_sq);
      const V f = u * p - a;
      const M root = O::land(O::lnot(done), O::eq(f, zero));
      result = O::select(root, u, result);
      done = O::lor(done, root);
      const M below = O::lt(f, zero);
      lo = O::select(below, u, lo);
      hi = O::select(below, hi, u);
      // F'(u) = φ''(u) = (u²+β²)^{L/2−2}·((L−1)u²+β²) = p·((L−1)u²+β²)/s.
      const V fp = p * O::fma(V(l_minus_1()), u * u, b2) / s;
      const V next = u - f / fp;
      // A Newton step this small means u is the root up to rounding (checked
      // before the safeguard: the bracket may already have closed onto u).
      const M converged = O::land(O::lnot(done), O::le(O::abs(next - u), tol * u));
      result = O::select(converged, next, result);
      done = O::lor(done, converged);
      if (O::all(done)) return result;
      u = O::select(O::land(O::lt(lo, next), O::lt(next, hi)), next,
                    lo + V(T(0.5)) * (hi - lo));
    }
    return O::select(done, result, u);
  }

  static constexpr int kMaxIterations = 100;
};

}  // namespace mirrorflow::core
