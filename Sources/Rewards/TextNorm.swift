import Engine
import Foundation
import World

// TextNorm (Kim et al. 2024, "Confidence-aware Reward Optimization for Fine-tuning Text-to-Image
// Models"). For an image x of prompt y, C(y) a set of semantically contrastive prompts (each a
// near miss of y) and τ a temperature, the confidence-normalized reward is the reward model's
// probability that x matches y rather than one of the near misses:
//
//     r̃(x, y) = exp(r(x, y)/τ) / Σ_{y′ ∈ {y} ∪ C(y)} exp(r(x, y′)/τ)        ∈ (0, 1).
//
// A reward model that rates an image highly for every prompt — the kind of blind spot a policy
// learns to exploit — gains nothing under r̃.

/// TextNorm's settings: which heads get a `textnorm_<head>` perspective, how many contrastive
/// prompts, τ, and optionally the user's own contrastive sets.
public struct TextNormSettings: Codable, Equatable, Sendable {
    /// The prompt-dependent heads normalized (a head absent from the model is an error).
    public var heads = ["alignment", "overall"]
    /// |C(y)|: contrastive prompts per prompt (fewer when the world offers fewer).
    public var contrastivePrompts = 8
    /// τ (in reward units).
    public var temperature = 1.0
    /// A JSONL file of `{"prompt": "...", "contrastive": ["...", ...]}` for prompts outside the
    /// world's grammar; prompts it lacks fall back to the world's contrastive generator. Empty: none.
    public var contrastiveFile = ""

    public init() {}
}

/// r̃ for rewards laid out set by set: `rewards` [Σ nᵢ] holds, for image i, its reward against each
/// prompt of its set of nᵢ = `setSizes[i]` (its own prompt first); returns r̃ [B], differentiable.
public func textNormalized(_ rewards: Tensor, setSizes: [Int], temperature: Double) throws -> Tensor {
    let total = setSizes.reduce(0, +)
    try checkShape(rewards.shape == [total] && setSizes.allSatisfy { $0 >= 1 }, "textNormalized",
                   "rewards \(describe(rewards.shape)) for sets of \(setSizes.count == 0 ? "nothing" : "\(setSizes.min()!)…\(setSizes.max()!)") prompts, \(total) in all")
    try checkArgument(temperature > 0, "textNormalized", "temperature \(temperature) must be positive")
    let width = setSizes.max() ?? 1
    // Sets shorter than the widest are padded with a logit so low that its exp is 0.
    let padded = try concat([rewards * (1 / temperature), Tensor([-1e4], shape: [1], dtype: rewards.dtype)], axis: 0)
    var index: [Int] = [], offset = 0
    for n in setSizes {
        index += (0..<width).map { $0 < n ? offset + $0 : total }
        offset += n
    }
    let logits = try padded.indexSelect(axis: 0, index).reshaped([setSizes.count, width])
    return try logits.softmax(axis: 1).slice(axis: 1, 0..<1).reshaped([setSizes.count])
}

/// Where a prompt's contrastive set comes from: the user's file, else the world's generator.
public struct ContrastiveSets {
    public let limit: Int
    let given: [String: [String]]

    /// Reads `settings.contrastiveFile` (if any).
    public init(_ settings: TextNormSettings) throws {
        limit = settings.contrastivePrompts
        var given: [String: [String]] = [:]
        if !settings.contrastiveFile.isEmpty {
            struct Line: Decodable { var prompt: String; var contrastive: [String] }
            let url = URL(fileURLWithPath: settings.contrastiveFile)
            guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw RewardError("cannot read \(url.path)") }
            for (number, line) in text.split(whereSeparator: \.isNewline).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                do {
                    let entry = try JSONDecoder().decode(Line.self, from: Data(line.utf8))
                    given[entry.prompt] = entry.contrastive
                } catch {
                    throw RewardError("\(url.lastPathComponent):\(number + 1): not {\"prompt\": ..., \"contrastive\": [...]}")
                }
            }
        }
        self.given = given
    }

    /// C(y): up to `limit` near misses of `prompt`, never `prompt` itself.
    public func contrastive(_ prompt: String) throws -> [String] {
        let candidates: [String]
        if let listed = given[prompt] {
            candidates = listed
        } else {
            guard let parsed = try? Prompt(parsing: prompt) else {
                throw RewardError("TextNorm: '\(prompt)' is not in the world's grammar and has no contrastive set in the contrastive file")
            }
            candidates = parsed.contrastive(limit: limit).map(\.prompt.caption)
        }
        var seen: Set<String> = [prompt], result: [String] = []
        for candidate in candidates where result.count < limit && seen.insert(candidate).inserted { result.append(candidate) }
        return result
    }
}
