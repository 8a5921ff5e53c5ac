/// A word-level tokenizer built from training captions: lower-cased words split on spaces and
/// punctuation, ids sorted by word, with PAD = 0, UNK = 1 and EOS = 2. A word it has not seen
/// maps to UNK and is reported once, not an error.
public final class Tokenizer: Codable {
    public static let pad = 0, unknown = 1, endOfSequence = 2
    public let vocabulary: [String]
    private let ids: [String: Int]
    private var reported: Set<String> = []

    enum CodingKeys: String, CodingKey { case vocabulary }

    /// A tokenizer over the words of `captions`.
    public init(captions: [String]) {
        let words = Set(captions.flatMap(Tokenizer.words))
        vocabulary = ["<pad>", "<unk>", "<eos>"] + words.sorted()
        ids = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($0.element, $0.offset) })
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        vocabulary = try container.decode([String].self, forKey: .vocabulary)
        guard vocabulary.prefix(3) == ["<pad>", "<unk>", "<eos>"], Set(vocabulary).count == vocabulary.count else {
            throw DecodingError.dataCorruptedError(forKey: .vocabulary, in: container,
                                                   debugDescription: "a vocabulary starts with <pad>, <unk>, <eos> and has no repeats")
        }
        ids = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($0.element, $0.offset) })
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(vocabulary, forKey: .vocabulary)
    }

    public var count: Int { vocabulary.count }

    /// Lower-cased words of a caption.
    static func words(_ caption: String) -> [String] {
        caption.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init)
    }

    /// Ids of a caption followed by EOS, cut to `length` (EOS kept) and padded with PAD; and
    /// which positions hold real tokens. `report` is called once per unknown word.
    public func encode(_ caption: String, length: Int, report: (String) -> Void = { _ in }) -> (ids: [Int], valid: [Bool]) {
        var tokens = Tokenizer.words(caption).map { word -> Int in
            if let id = ids[word] { return id }
            if reported.insert(word).inserted { report(word) }
            return Tokenizer.unknown
        }
        tokens = Array(tokens.prefix(max(length - 1, 0))) + [Tokenizer.endOfSequence]
        let valid = tokens.count
        return (tokens + [Int](repeating: Tokenizer.pad, count: max(length - valid, 0)),
                [Bool](repeating: true, count: valid) + [Bool](repeating: false, count: max(length - valid, 0)))
    }

    /// The words of ids, up to EOS.
    public func decode(_ tokens: [Int]) -> String {
        tokens.prefix { $0 != Tokenizer.endOfSequence }.filter { $0 != Tokenizer.pad }
            .map { $0 < vocabulary.count ? vocabulary[$0] : "<unk>" }.joined(separator: " ")
    }
}
