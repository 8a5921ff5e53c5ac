import Foundation

/// Loads `Codable` settings from JSON strictly and with defaults: the JSON is laid over the
/// defaults' own encoding, so any key may be left out, and a key the settings do not have is an
/// error naming its path (`unet.blockChannel`), never silently ignored.
public enum ConfigLoader {
    public struct ConfigError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Settings from JSON bytes over `defaults`.
    public static func decode<T: Codable>(_ type: T.Type, from data: Data, defaults: T, source: String = "config") throws -> T {
        let given: Any
        do { given = try JSONSerialization.jsonObject(with: data) } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? error.localizedDescription
            throw ConfigError(description: "\(source): malformed JSON (\(detail))")
        }
        guard given is [String: Any] else { throw ConfigError(description: "\(source): the top level must be a JSON object of settings") }
        let base = try JSONSerialization.jsonObject(with: JSONEncoder().encode(defaults))
        let open = (T.self as? OpenConfigMaps.Type)?.openMaps ?? []
        let renamed = (T.self as? RenamedConfigKeys.Type)?.renamedKeys ?? [:]
        let merged = try merge(given, over: base, path: "", source: source, open: open, renamed: renamed)
        do {
            return try JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: merged))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.dataCorrupted(context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            // Some decoders lose the key's path (a fraction where a whole number belongs, on Linux).
            throw ConfigError(description: "\(source): " + (path.isEmpty ? "a value has the wrong type (\(context.debugDescription))"
                                                                           : "wrong value at '\(path)': \(context.debugDescription)"))
        } catch {
            throw ConfigError(description: "\(source): \(error)")
        }
    }

    /// Settings from a JSON file over `defaults`.
    public static func load<T: Codable>(_ type: T.Type, from url: URL, defaults: T) throws -> T {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError(description: "cannot read config \(url.path): \(error.localizedDescription)")
        }
        let value = try decode(type, from: data, defaults: defaults, source: url.lastPathComponent)
        if let checked = value as? ValidatedConfig {
            do { try checked.validate() } catch { throw ConfigError(description: "\(url.lastPathComponent): \(error)") }
        }
        return value
    }

    /// The settings as pretty, key-sorted JSON (what a run writes into its log).
    public static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }

    private static func merge(_ given: Any, over base: Any, path: String, source: String, open: Set<String>,
                              renamed: [String: String]) throws -> Any {
        guard let givenObject = given as? [String: Any], !open.contains(path) else { return given }
        guard var baseObject = base as? [String: Any] else {
            throw ConfigError(description: "\(source): '\(path)' should not be an object")
        }
        for (key, value) in givenObject {
            let here = path.isEmpty ? key : "\(path).\(key)"
            guard let existing = baseObject[key] else {
                if let now = renamed[here] {
                    throw ConfigError(description: "\(source): '\(here)' is now called '\(now)'; rename the key")
                }
                let known = baseObject.keys.sorted().joined(separator: ", ")
                throw ConfigError(description: "\(source): unknown key '\(here)' (known here: \(known))")
            }
            baseObject[key] = try merge(value, over: existing, path: here, source: source, open: open, renamed: renamed)
        }
        return baseObject
    }
}

/// Settings that check themselves: `ConfigLoader.load` calls `validate()` on what it read, so that
/// a value out of range is an error naming the file as well as the setting.
public protocol ValidatedConfig {
    func validate() throws
}

/// Settings with dictionary fields whose keys are the user's (reward weights by perspective):
/// at these dotted paths a given object replaces the default whole instead of being checked
/// key by key.
public protocol OpenConfigMaps {
    static var openMaps: Set<String> { get }
}

/// Settings whose keys were renamed: at these dotted paths an old key is an error that names the
/// new one, instead of the generic "unknown key".
public protocol RenamedConfigKeys {
    static var renamedKeys: [String: String] { get }
}
