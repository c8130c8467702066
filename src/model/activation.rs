//! The activations of transformers' ACT2FN that cost one element-wise pass. The scalar formulas
//! here are the reference: every backend's activation is tested against `Activation::apply`.
//! They are computed in f64 and rounded once, so the reference is as exact as f32 storage allows.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`, `gelu_python`: x * Phi(x) with the exact erf.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    GeluTanh,
    /// `gelu_fast`: the tanh form written as in transformers' FastGELUActivation.
    GeluFast,
    /// `gelu_accurate`: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with precomputed sqrt(2/pi).
    GeluAccurate,
    /// `gelu_10`: exact gelu clipped to [-10, 10].
    Gelu10,
    /// `quick_gelu`: x * sigmoid(1.702 x).
    QuickGelu,
    /// `silu`, `swish`: x * sigmoid(x).
    Silu,
    /// `relu`.
    Relu,
    /// `relu6`: min(max(x, 0), 6).
    Relu6,
    /// `relu2`: relu(x)^2.
    Relu2,
    /// `sigmoid`.
    Sigmoid,
    /// `tanh`.
    Tanh,
    /// `mish`: x * tanh(softplus(x)).
    Mish,
    /// `linear`: identity.
    Linear,
}

impl Activation {
    /// The names `from_name` accepts, for error messages.
    pub const SUPPORTED: &'static str = "gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, \
        gelu_accurate, gelu_python, gelu_10, quick_gelu, silu, swish, relu, relu6, relu2, sigmoid, \
        tanh, mish, linear";

    /// Parses a transformers ACT2FN name; `None` for a name we do not implement.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" | "gelu_python" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "gelu_fast" => Activation::GeluFast,
            "gelu_accurate" => Activation::GeluAccurate,
            "gelu_10" => Activation::Gelu10,
            "quick_gelu" => Activation::QuickGelu,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            "relu6" => Activation::Relu6,
            "relu2" => Activation::Relu2,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "mish" => Activation::Mish,
            "linear" => Activation::Linear,
            _ => return None,
        })
    }

    /// The reference value of the activation at `x`.
    pub fn apply(self, x: f32) -> f32 {
        let x = x as f64;
        let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        let y = match self {
            Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Activation::GeluTanh | Activation::GeluAccurate => {
                0.5 * x * (1.0 + (sqrt_2_over_pi * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::GeluFast => {
                0.5 * x * (1.0 + (x * 0.7978845608 * (1.0 + 0.044715 * x * x)).tanh())
            }
            Activation::Gelu10 => {
                (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))).clamp(-10.0, 10.0)
            }
            Activation::QuickGelu => x * sigmoid(1.702 * x),
            Activation::Silu => x * sigmoid(x),
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Relu2 => x.max(0.0) * x.max(0.0),
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            // softplus as torch computes it: linear above 20 to avoid overflow.
            Activation::Mish => {
                let softplus = if x > 20.0 { x } else { x.exp().ln_1p() };
                x * softplus.tanh()
            }
            Activation::Linear => x,
        };
        y as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Values from torch.nn.functional in float64.
        let close = |a: f32, b: f64| ((a as f64) - b).abs() < 1e-6;
        assert!(close(Activation::Gelu.apply(1.0), 0.8413447460685429));
        assert!(close(Activation::Gelu.apply(-2.0), -0.04550026389635842));
        assert!(close(Activation::GeluTanh.apply(1.0), 0.8411919906082768));
        assert!(close(Activation::QuickGelu.apply(1.0), 0.8457957659328212));
        assert!(close(Activation::Silu.apply(1.0), 0.7310585786300049));
        assert!(close(Activation::Mish.apply(1.0), 0.8650983882673103));
        assert_eq!(Activation::Relu.apply(-3.0), 0.0);
        assert_eq!(Activation::Relu6.apply(7.0), 6.0);
    }

    #[test]
    fn names_resolve_like_act2fn() {
        assert_eq!(
            Activation::from_name("gelu_pytorch_tanh"),
            Some(Activation::GeluTanh)
        );
        assert_eq!(Activation::from_name("swish"), Some(Activation::Silu));
        assert_eq!(Activation::from_name("gelu_magic"), None);
    }
}
