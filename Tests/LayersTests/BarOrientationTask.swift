import Engine
import Layers

/// A toy vision task for checking the engine end to end: tell a horizontal bar from a vertical
/// one in a noisy 8×8 image (a fixture of the training tests).
public enum BarOrientationTask {
    /// `count` images [count, 1, 8, 8] with a full-length bar at a random row or column plus
    /// N(0, noise²) pixel noise, and labels (1 = vertical).
    public static func make(count: Int, noise: Double = 0.1, seed: UInt64) throws -> (images: Tensor, labels: [Int]) {
        var rng = RandomGenerator(seed: seed)
        var pixels = [Double](repeating: 0, count: count * 64)
        var labels: [Int] = []
        for n in 0..<count {
            let vertical = rng.uniform() < 0.5, position = Int(rng.uniform() * 8)
            labels.append(vertical ? 1 : 0)
            for i in 0..<8 {
                let (y, x) = vertical ? (i, position) : (position, i)
                pixels[n * 64 + y * 8 + x] = 1
            }
            for i in 0..<64 { pixels[n * 64 + i] += noise * rng.normal() }
        }
        return (try Tensor(pixels, shape: [count, 1, 8, 8]), labels)
    }
}

/// A small conv net: conv → group norm → SiLU → stride-2 conv → SiLU → mean-pool → linear.
public final class BarOrientationClassifier: Module {
    public let conv1: Conv2d, norm: GroupNorm, conv2: Conv2d, head: Linear

    public init(width: Int = 8, using rng: inout RandomGenerator) {
        conv1 = Conv2d(1, width, kernelSize: 3, padding: 1, using: &rng)
        norm = GroupNorm(groups: 4, channels: width)
        conv2 = Conv2d(width, width, kernelSize: 3, stride: 2, padding: 1, using: &rng)
        head = Linear(width, 2, using: &rng)
    }

    public var children: [(name: String, module: any Module)] {
        [(name: "conv1", module: conv1), (name: "norm", module: norm), (name: "conv2", module: conv2), (name: "head", module: head)]
    }

    /// Logits [N, 2] for images [N, 1, 8, 8].
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = try silu(conv2(silu(norm(conv1(x)))))
        return try head(h.mean(axes: [2, 3]))
    }
}
