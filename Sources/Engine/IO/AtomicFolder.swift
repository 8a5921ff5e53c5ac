import Foundation

/// Writes a folder so that it is never seen half-written: `body` fills a temporary sibling
/// `NAME.partial`, which then replaces `folder` by rename. A crash leaves the previous folder or
/// a `.partial` one (which readers skip), not a partial `folder`. Checkpoints are written this way.
public func writeFolderAtomically(_ folder: URL, _ body: (URL) throws -> Void) throws {
    let manager = FileManager.default
    let temporary = folder.deletingLastPathComponent().appendingPathComponent(folder.lastPathComponent + ".partial")
    try? manager.removeItem(at: temporary)
    try manager.createDirectory(at: temporary, withIntermediateDirectories: true)
    try body(temporary)
    try? manager.removeItem(at: folder)
    try manager.moveItem(at: temporary, to: folder)
}
