import Engine

/// How the reward model joins image and text.
public enum RewardArchitecture: String, Codable, Sendable {
    case llava
    case dualEncoder
}

/// The shape of the compact LLaVA-Reward: a small ViT, a projector, a causal decoder, SkipCA and
/// one bias-free value head per perspective. Defaults are the shipped size; `tiny` is for tests.
public struct RewardModelConfig: Codable, Equatable, Sendable {
    /// Side of the square input image in pixels.
    public var imageSize = 32
    /// Side of a ViT patch; (imageSize / patchSize)² image tokens (64 by default).
    public var patchSize = 4
    public var visionWidth = 64
    public var visionLayers = 2
    public var visionHeads = 4
    /// Width of the decoder's hidden states (the "MLLM").
    public var width = 128
    public var layers = 4
    public var heads = 4
    /// Prompt tokens including EOS (padding fills the rest).
    public var maxTextLength = 16
    /// Skip-connection cross-attention from the final hidden state to the embedding-level image
    /// tokens before the value heads; false reads the heads straight off the final hidden state.
    public var skipCrossAttention = true
    /// `llava`: the reward read at EOS of the joint image–text sequence (with SkipCA if set).
    /// `dualEncoder`: a CLIP-style baseline sharing the vision encoder — mean-pooled image tokens
    /// and the text-only EOS state, each projected, scored by their dot product per perspective.
    public var architecture = RewardArchitecture.llava
    /// One value head per name.
    public var perspectives = ["alignment", "fidelity", "safety", "overall"]
    /// Perspectives whose reward also adds log p(prompt | image) from the decoder's language-model
    /// head (LLaVA architecture only): the captioning pretraining's own judgment as a prior, which
    /// preference training then corrects through the head and the LoRA-tuned decoder.
    public var captionLikelihoodPerspectives: [String] = []

    public init() {}

    /// A model small enough for finite-difference tests.
    public static var tiny: RewardModelConfig {
        var config = RewardModelConfig()
        config.imageSize = 8
        config.patchSize = 4
        config.visionWidth = 8
        config.visionLayers = 1
        config.visionHeads = 2
        config.width = 8
        config.layers = 2
        config.heads = 2
        config.maxTextLength = 5
        config.perspectives = ["alignment", "safety"]
        return config
    }

    /// Image tokens per image.
    public var imageTokens: Int { (imageSize / patchSize) * (imageSize / patchSize) }

    /// Checks that the sizes fit together.
    public func validate() throws {
        try checkArgument(imageSize > 0 && patchSize > 0 && imageSize % patchSize == 0, "RewardModelConfig",
                          "imageSize \(imageSize) must be a positive multiple of patchSize \(patchSize)")
        try checkArgument(visionHeads > 0 && visionWidth % visionHeads == 0, "RewardModelConfig",
                          "visionWidth \(visionWidth) must be a multiple of visionHeads \(visionHeads)")
        try checkArgument(heads > 0 && width % heads == 0, "RewardModelConfig", "width \(width) must be a multiple of heads \(heads)")
        try checkArgument(layers >= 1 && visionLayers >= 0 && maxTextLength >= 2, "RewardModelConfig",
                          "need at least one decoder layer and room for a word and EOS")
        try checkArgument(!perspectives.isEmpty && Set(perspectives).count == perspectives.count, "RewardModelConfig",
                          "perspectives must be distinct and not empty, got \(perspectives)")
        try checkArgument(captionLikelihoodPerspectives.allSatisfy(perspectives.contains) && (captionLikelihoodPerspectives.isEmpty || architecture == .llava),
                          "RewardModelConfig", "captionLikelihoodPerspectives \(captionLikelihoodPerspectives) must be among the perspectives "
                          + "\(perspectives), with the llava architecture")
    }
}
