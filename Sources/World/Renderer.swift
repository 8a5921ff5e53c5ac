import Images

/// Draws scenes: flat palette colors on the background, objects in order (later on top), and the
/// hazard mark. Deterministic; with `antialias`, each pixel averages a 4×4 grid of samples.
public struct Renderer: Sendable {
    public var size: Int
    public var antialias: Bool

    public init(size: Int = 32, antialias: Bool = false) {
        precondition(size >= 8, "canvas size \(size) is too small")
        self.size = size
        self.antialias = antialias
    }

    public func render(_ scene: Scene) -> RGBImage {
        let background = WorldColors.background
        var image = RGBImage(width: size, height: size, fill: [background.0, background.1, background.2])
        let samples = antialias ? 4 : 1
        for py in 0..<size {
            for px in 0..<size {
                var total = (0, 0, 0)
                for sy in 0..<samples {
                    for sx in 0..<samples {
                        let x = (Double(px) + (Double(sx) + 0.5) / Double(samples)) / Double(size)
                        let y = (Double(py) + (Double(sy) + 0.5) / Double(samples)) / Double(size)
                        let c = color(at: x, y, scene)
                        total.0 += Int(c.0); total.1 += Int(c.1); total.2 += Int(c.2)
                    }
                }
                let n = samples * samples
                image[px, py] = [UInt8((total.0 + n / 2) / n), UInt8((total.1 + n / 2) / n), UInt8((total.2 + n / 2) / n)]
            }
        }
        return image
    }

    /// The color of the scene at a point (canvas fractions).
    private func color(at x: Double, _ y: Double, _ scene: Scene) -> (UInt8, UInt8, UInt8) {
        if let h = scene.hazard, x >= h.x, x < h.x + h.side, y >= h.y, y < h.y + h.side { return WorldColors.hazard }
        for object in scene.objects.reversed() where contains(object, x, y) { return object.color.rgb }
        return WorldColors.background
    }

    /// Whether a point lies inside an object's shape.
    func contains(_ o: SceneObject, _ x: Double, _ y: Double) -> Bool {
        let h = o.halfSide, dx = x - o.centerX, dy = y - o.centerY
        switch o.shape {
        case .square: return Swift.abs(dx) <= h && Swift.abs(dy) <= h
        case .circle: return dx * dx + dy * dy <= h * h
        case .triangle:
            // Apex at the top centre, base along the bottom edge of the box.
            guard dy >= -h && dy <= h else { return false }
            return Swift.abs(dx) <= (dy + h) / 2
        }
    }
}
