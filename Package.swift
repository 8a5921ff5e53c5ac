// swift-tools-version:6.0
import PackageDescription

// Numeric kernels need a target CPU: without one, SIMD fused multiply-adds become calls to
// `fmaf` (60x slower). Haswell (AVX2 + FMA) runs on nearly every x86-64 machine in use.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell"], .when(platforms: [.linux])),
    // Kernels share raw pointers across worker threads; Swift 6's Sendable checking would
    // need a wrapper in every kernel, so the package keeps the Swift 5 language mode.
]

let package = Package(
    name: "DiffusionRL",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "diffusion-rl", targets: ["DiffusionRLCLI"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Layers", targets: ["Layers"]),
        .library(name: "Images", targets: ["Images"]),
        .library(name: "World", targets: ["World"]),
        .library(name: "RunLog", targets: ["RunLog"]),
        .library(name: "Diffusion", targets: ["Diffusion"]),
    ],
    targets: [
        // Layer 1: system library shims.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        // Layer 2: the tensor engine (tensors, ops with backward, autodiff, optimizers, RNG, safetensors).
        .target(name: "Engine", dependencies: ["CBLAS"], swiftSettings: kernelFlags),
        // Layer 2: the communicator between processes (one process, or MPI ranks under mpirun).
        .target(name: "Distributed", dependencies: ["CMPI", "Engine"], swiftSettings: kernelFlags),
        // Layer 2: 8-bit images, PNG through zlib, image grids.
        .target(name: "Images", dependencies: ["CZlib"], swiftSettings: kernelFlags),
        // Layer 3: layers and the module protocol.
        .target(name: "Layers", dependencies: ["Engine"], swiftSettings: kernelFlags),
        // Layer 3: what models read: the caption tokenizer and images as tensors (shared by the
        // diffusion model and the reward model).
        .target(name: "Inputs", dependencies: ["Engine", "Images"], swiftSettings: kernelFlags),
        // Layer 2: means with standard errors clustered by prompt, paired differences.
        .target(name: "Statistics", swiftSettings: kernelFlags),
        // Layer 4: the embedded world (scenes, captions, renderer, gold judge, splits).
        .target(name: "World", dependencies: ["Engine", "Images"], swiftSettings: kernelFlags),
        // Layer 4: the latent diffusion model (schedules, DDIM as a policy, ...).
        .target(name: "Diffusion", dependencies: ["Engine", "Layers", "Images", "Inputs", "Distributed"], swiftSettings: kernelFlags),
        // Layer 4: the HDF5 run log (writer, SWMR, reader).
        .target(name: "RunLog", dependencies: ["CHDF5", "Images"], swiftSettings: kernelFlags),
        // Layer 4: pretraining the VAE, text encoder and UNet (world or folder data, HDF5 log).
        .target(name: "Pretraining", dependencies: ["Diffusion", "World", "RunLog", "Engine", "Layers", "Images", "Inputs"],
                swiftSettings: kernelFlags),
        // Layer 4: gold-judge evaluation of a model (images for split prompts, scores with errors).
        .target(name: "Evaluation", dependencies: ["Diffusion", "World", "Engine", "Images", "Inputs", "Statistics", "Distributed"], swiftSettings: kernelFlags),
        // Layer 4: rewards as named perspectives (gold judge, compressibility) and their composition.
        .target(name: "Rewards", dependencies: ["World", "Images", "Engine"], swiftSettings: kernelFlags),
        // Layer 4: RL fine-tuning (DDPO: advantages, policy losses, KL drift, the trainer).
        .target(name: "RL", dependencies: ["Diffusion", "Rewards", "Evaluation", "World", "RunLog", "Engine", "Layers", "Images", "Inputs", "Distributed"],
                swiftSettings: kernelFlags),
        // Layer 4: the compact LLaVA-Reward (vision encoder, multimodal decoder, SkipCA, value
        // heads, preference losses).
        .target(name: "RewardModel", dependencies: ["Inputs", "Statistics", "Rewards", "World", "RunLog", "Engine", "Layers", "Images", "Distributed"],
                swiftSettings: kernelFlags),
        // Layer 5: preference data from a diffusion model's images, labeled by simulated annotators.
        .target(name: "RewardData", dependencies: ["RewardModel", "Diffusion", "World", "Engine", "Images"], swiftSettings: kernelFlags),
        // Layer 5: best-of-N studies (overoptimization, perspectives) over any scorers of images.
        .target(name: "Studies", dependencies: ["Diffusion", "Evaluation", "Statistics", "World", "RunLog", "Images", "Distributed"], swiftSettings: kernelFlags),
        // Layer 6: the command line tool.
        .executableTarget(name: "DiffusionRLCLI", dependencies: ["Engine", "Layers", "Images", "Inputs", "Statistics", "World", "RunLog", "Diffusion", "Pretraining", "Evaluation",
                                                                         "Rewards", "RL", "RewardModel", "RewardData", "Studies", "Distributed"],
                          swiftSettings: kernelFlags),
        .testTarget(name: "EngineTests", dependencies: ["Engine"], swiftSettings: kernelFlags),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "Engine"], swiftSettings: kernelFlags),
        .testTarget(name: "ImagesTests", dependencies: ["Images", "CZlib"], swiftSettings: kernelFlags),
        .testTarget(name: "WorldTests", dependencies: ["World", "Images", "Engine"], swiftSettings: kernelFlags),
        .testTarget(name: "DiffusionTests", dependencies: ["Diffusion", "Engine", "Layers", "Images", "Inputs"], swiftSettings: kernelFlags),
        .testTarget(name: "PretrainingTests", dependencies: ["Pretraining", "Evaluation", "Diffusion", "RunLog", "Engine", "World"],
                    swiftSettings: kernelFlags),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Statistics", "Diffusion", "World", "Images", "Engine", "Inputs"], swiftSettings: kernelFlags),
        .testTarget(name: "RunLogTests", dependencies: ["RunLog", "Images", "CHDF5"], swiftSettings: kernelFlags),
        .testTarget(name: "RewardsTests", dependencies: ["Rewards", "World", "Images", "Engine"], swiftSettings: kernelFlags),
        .testTarget(name: "RLTests", dependencies: ["RL", "Evaluation", "Rewards", "Diffusion", "RunLog", "Engine", "Layers", "World", "Images", "Inputs"],
                    swiftSettings: kernelFlags),
        .testTarget(name: "RewardModelTests", dependencies: ["RewardModel", "RewardData", "Inputs", "Statistics", "Diffusion", "World", "Images", "Engine", "Layers", "RunLog"], swiftSettings: kernelFlags),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "Engine"], swiftSettings: kernelFlags),
        .testTarget(name: "StudiesTests", dependencies: ["Studies", "Statistics", "Evaluation", "Diffusion", "World", "RunLog", "Inputs", "Engine"],
                    swiftSettings: kernelFlags),
        .testTarget(name: "CLITests", dependencies: ["DiffusionRLCLI", "RunLog", "Diffusion", "Engine", "World", "RewardModel", "Pretraining", "Inputs", "Images"], swiftSettings: kernelFlags),
    ],
    swiftLanguageModes: [.v5]
)
