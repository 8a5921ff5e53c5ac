/// The 4-connected components of an image's pixels that share a label: each component's label and
/// its pixel indices (row-major, `width` × `height`), in the order their first pixel comes in a
/// row-major scan. Pixels whose label `ignored` accepts belong to none.
func connectedComponents(labels: [Int], width w: Int, height h: Int, ignored: (Int) -> Bool) -> [(label: Int, pixels: [Int])] {
    precondition(labels.count == w * h, "\(labels.count) labels for a \(w)×\(h) image")
    var visited = [Bool](repeating: false, count: w * h)
    var components: [(label: Int, pixels: [Int])] = []
    var stack: [Int] = []
    for start in 0..<(w * h) where !visited[start] && !ignored(labels[start]) {
        let label = labels[start]
        var members: [Int] = []
        stack.append(start)
        visited[start] = true
        while let i = stack.popLast() {
            members.append(i)
            let (x, y) = (i % w, i / w)
            for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] where nx >= 0 && nx < w && ny >= 0 && ny < h {
                let j = ny * w + nx
                if !visited[j] && labels[j] == label { visited[j] = true; stack.append(j) }
            }
        }
        components.append((label, members))
    }
    return components
}
