import Engine
print("diffusion-rl")
