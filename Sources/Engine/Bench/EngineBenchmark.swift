import CBLAS

/// `diffusion-rl bench engine`: GFLOP/s of the engine's kernels at the default UNet's shapes,
/// each next to the `sgemm` ceiling measured in the same run.
///
/// FLOP counts (multiply and add counted separately):
///   GEMM m×n×k: 2mnk.   conv2d forward: 2·N·O·Ho·Wo·C·k²; backward (dW and dx): twice that —
///   the direct convolution's count whatever the algorithm, so where Winograd's F(2×2, 3×3) runs
///   (2.25× fewer multiplications) the GFLOP/s are effective rates: the direct convolution's work
///   over the time taken, which can exceed what the GEMMs themselves reach.
///   attention forward: 2·B·H·Lq·Lk·(d + dv) for Q·Kᵀ and P·V (softmax not counted);
///   backward: twice that.
///   group norm + SiLU: counted as 8 FLOPs per element forward (mean, variance, normalize, affine,
///   SiLU) and 12 backward — a convention, since these ops are memory-bound.

/// One measured kernel.
public struct BenchmarkFigure: Codable, Sendable {
    public let name: String
    public let shape: String
    public let flops: Double
    public let seconds: Double
    public var gflops: Double { flops / seconds / 1e9 }
    public let ceilingGflops: Double
    public var fractionOfCeiling: Double { gflops / ceilingGflops }

    enum CodingKeys: String, CodingKey { case name, shape, flops, seconds, gflops, ceilingGflops, fractionOfCeiling }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name); try c.encode(shape, forKey: .shape); try c.encode(flops, forKey: .flops)
        try c.encode(seconds, forKey: .seconds); try c.encode(gflops, forKey: .gflops)
        try c.encode(ceilingGflops, forKey: .ceilingGflops); try c.encode(fractionOfCeiling, forKey: .fractionOfCeiling)
    }
    public init(name: String, shape: String, flops: Double, seconds: Double, ceilingGflops: Double) {
        self.name = name; self.shape = shape; self.flops = flops; self.seconds = seconds; self.ceilingGflops = ceilingGflops
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name); shape = try c.decode(String.self, forKey: .shape)
        flops = try c.decode(Double.self, forKey: .flops); seconds = try c.decode(Double.self, forKey: .seconds)
        ceilingGflops = try c.decode(Double.self, forKey: .ceilingGflops)
    }
}

/// Everything `bench engine` measured.
public struct EngineBenchmarkReport: Codable, Sendable {
    public let threads: Int
    public let ceilingGflops: Double
    public let ceilingShape: String
    public let figures: [BenchmarkFigure]
}

public enum EngineBenchmark {
    /// Runs the benchmark at `threads` threads, calling `progress` with each figure as it lands.
    public static func run(threads: Int, batch: Int = 32, progress: (BenchmarkFigure) -> Void = { _ in }) throws
        -> EngineBenchmarkReport {
        Threads.set(threads)
        var rng = RandomGenerator(seed: 0)
        // The ceiling is measured before and after the kernels and the higher one kept, so a busy
        // second core during one measurement does not flatter the kernels.
        var ceiling = try measureGemmCeiling(size: 1024, using: &rng)
        var figures: [BenchmarkFigure] = []
        func add(_ figure: BenchmarkFigure) { figures.append(figure); progress(figure) }

        // The default UNet's 3×3 convolutions (resnets at both levels, the skip-concatenating up
        // blocks, the stride-2 downsampler) and a 1×1 shortcut.
        let convs: [(String, c: Int, o: Int, size: Int, k: Int, stride: Int)] = [
            ("resnet 64→64 @8×8", 64, 64, 8, 3, 1),
            ("resnet 128→128 @4×4", 128, 128, 4, 3, 1),
            ("up resnet 256→128 @4×4", 256, 128, 4, 3, 1),
            ("up resnet 192→64 @8×8", 192, 64, 8, 3, 1),
            ("downsample 64→64 s2 @8×8", 64, 64, 8, 3, 2),
            ("shortcut 1×1 64→128 @4×4", 64, 128, 4, 1, 1),
        ]
        for conv in convs {
            let x = Tensor.randn([batch, conv.c, conv.size, conv.size], using: &rng)
            let w = Tensor.randn([conv.o, conv.c, conv.k, conv.k], std: 0.05, using: &rng)
            let b = Tensor.randn([conv.o], using: &rng)
            let padding = conv.k / 2
            let out = (conv.size + 2 * padding - conv.k) / conv.stride + 1
            let flops = 2.0 * Double(batch * conv.o * out * out * conv.c * conv.k * conv.k)
            let shape = "N=\(batch) \(conv.0)"
            let forward = try bestSeconds {
                _ = try withNoGrad { try conv2d(x, weight: w, bias: b, stride: conv.stride, padding: padding) }
            }
            add(BenchmarkFigure(name: "conv2d forward", shape: shape, flops: flops, seconds: forward, ceilingGflops: ceiling))
            x.requiresGrad = true; w.requiresGrad = true; b.requiresGrad = true
            let y = try conv2d(x, weight: w, bias: b, stride: conv.stride, padding: padding)
            let seed = Tensor.randn(y.shape, using: &rng)
            let backward = try bestSeconds {
                // Forward + backward, minus the forward measured alone.
                let y = try conv2d(x, weight: w, bias: b, stride: conv.stride, padding: padding)
                try y.backward(gradient: seed)
            } - forward
            x.grad = nil; w.grad = nil; b.grad = nil
            add(BenchmarkFigure(name: "conv2d backward", shape: shape, flops: 2 * flops, seconds: backward, ceilingGflops: ceiling))
        }

        // Attention as the UNet runs it: 8 heads, self-attention over 64 latent pixels at 64
        // channels and 16 at 128, cross-attention to 16 text tokens.
        let attentions: [(String, heads: Int, lq: Int, lk: Int, d: Int)] = [
            ("self 64 tokens, 8×8 heads", 8, 64, 64, 8),
            ("cross 64→16 tokens, 8×8 heads", 8, 64, 16, 8),
            ("self 16 tokens, 8×16 heads", 8, 16, 16, 16),
        ]
        for attention in attentions {
            let q = Tensor.randn([batch, attention.heads, attention.lq, attention.d], using: &rng)
            let k = Tensor.randn([batch, attention.heads, attention.lk, attention.d], using: &rng)
            let v = Tensor.randn([batch, attention.heads, attention.lk, attention.d], using: &rng)
            let flops = 2.0 * Double(batch * attention.heads * attention.lq * attention.lk * 2 * attention.d)
            let shape = "B=\(batch) \(attention.0)"
            let forward = try bestSeconds { _ = try withNoGrad { try scaledDotProductAttention(query: q, key: k, value: v) } }
            add(BenchmarkFigure(name: "attention forward", shape: shape, flops: flops, seconds: forward, ceilingGflops: ceiling))
            for t in [q, k, v] { t.requiresGrad = true }
            let y = try scaledDotProductAttention(query: q, key: k, value: v)
            let seed = Tensor.randn(y.shape, using: &rng)
            let backward = try bestSeconds {
                try scaledDotProductAttention(query: q, key: k, value: v).backward(gradient: seed)
            } - forward
            for t in [q, k, v] { t.grad = nil }
            add(BenchmarkFigure(name: "attention backward", shape: shape, flops: 2 * flops, seconds: backward, ceilingGflops: ceiling))
        }

        for (channels, size) in [(64, 8), (128, 4)] {
            let x = Tensor.randn([batch, channels, size, size], using: &rng)
            let gamma = Tensor(repeating: 1, shape: [channels]), beta = Tensor(zeros: [channels])
            let elements = Double(x.count)
            let shape = "N=\(batch) C=\(channels) @\(size)×\(size), 32 groups"
            let forward = try bestSeconds {
                _ = try withNoGrad { silu(try groupNorm(x, groups: 32, weight: gamma, bias: beta)) }
            }
            add(BenchmarkFigure(name: "groupNorm+SiLU forward", shape: shape, flops: 8 * elements, seconds: forward, ceilingGflops: ceiling))
            x.requiresGrad = true; gamma.requiresGrad = true; beta.requiresGrad = true
            let seed = Tensor.randn(x.shape, using: &rng)
            let backward = try bestSeconds {
                try silu(try groupNorm(x, groups: 32, weight: gamma, bias: beta)).backward(gradient: seed)
            } - forward
            add(BenchmarkFigure(name: "groupNorm+SiLU backward", shape: shape, flops: 12 * elements, seconds: backward, ceilingGflops: ceiling))
        }
        ceiling = Swift.max(ceiling, try measureGemmCeiling(size: 1024, using: &rng))
        figures = figures.map {
            BenchmarkFigure(name: $0.name, shape: $0.shape, flops: $0.flops, seconds: $0.seconds, ceilingGflops: ceiling)
        }
        // Totals over the convolution shapes above: all their FLOPs over all their time.
        for name in ["conv2d forward", "conv2d backward"] {
            let rows = figures.filter { $0.name == name }
            figures.append(BenchmarkFigure(name: name, shape: "all \(rows.count) shapes above",
                                           flops: rows.map(\.flops).reduce(0, +), seconds: rows.map(\.seconds).reduce(0, +),
                                           ceilingGflops: ceiling))
        }
        return EngineBenchmarkReport(threads: threads, ceilingGflops: ceiling,
                                     ceilingShape: "sgemm 1024×1024×1024", figures: figures)
    }

    /// GFLOP/s of OpenBLAS's own multi-threaded `sgemm` on square matrices: the machine's
    /// practical ceiling, measured with OpenBLAS running `Threads.count` threads itself.
    public static func measureGemmCeiling(size n: Int, using rng: inout RandomGenerator) throws -> Double {
        let a = Tensor.randn([n, n], using: &rng), b = Tensor.randn([n, n], using: &rng), c = Tensor(zeros: [n, n])
        openblas_set_num_threads(Int32(Threads.count))
        defer { openblas_set_num_threads(1) }
        let (pa, pb, pc) = (a.storage.pointer(Float.self), b.storage.pointer(Float.self), c.storage.pointer(Float.self))
        let seconds = bestSeconds(minimumSeconds: 0.6) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, pa, Int32(n),
                        pb, Int32(n), 0, pc, Int32(n))
        }
        return 2 * Double(n * n * n) / seconds / 1e9
    }
}
