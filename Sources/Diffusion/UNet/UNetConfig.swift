/// The UNet's shape. The defaults are diffusers' `UNet2DConditionModel(sample_size=8,
/// in_channels=4, out_channels=4, block_out_channels=(64, 128), layers_per_block=1,
/// down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
/// up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
/// attention_head_dim=8, norm_num_groups=32)`: 3,152,644 parameters, loadable there by name.
public struct UNetConfig: Codable, Equatable, Sendable {
    public var inChannels = 4
    public var outChannels = 4
    public var blockOutChannels = [64, 128]
    public var layersPerBlock = 1
    /// Per down level, whether it has cross-attention transformers (up levels mirror it).
    public var crossAttention = [true, false]
    public var crossAttentionDimension = 64
    /// Number of heads — diffusers' `attention_head_dim`, which it uses as the head count.
    public var attentionHeads = 8
    public var normGroups = 32
    public var normEps = 1e-5

    public init() {}

    /// A tiny UNet for tests: the same layer types, a fraction of the widths.
    public static var tiny: UNetConfig {
        var config = UNetConfig()
        config.blockOutChannels = [8, 16]
        config.crossAttentionDimension = 8
        config.attentionHeads = 2
        config.normGroups = 4
        return config
    }

    /// Time-embedding width (4 × the first block's channels, as in diffusers).
    public var timeEmbeddingDimension: Int { blockOutChannels[0] * 4 }

    func validate() throws {
        guard !blockOutChannels.isEmpty, crossAttention.count == blockOutChannels.count,
              blockOutChannels.allSatisfy({ $0 % normGroups == 0 && $0 % attentionHeads == 0 }), layersPerBlock >= 1 else {
            throw DiffusionError.invalidSettings("UNet config: \(blockOutChannels) channels, \(crossAttention.count) attention flags, \(normGroups) groups, \(attentionHeads) heads")
        }
    }
}
