"""Float32 error of Winograd F(2×2, 3×3) and F(4×4, 3×3) against a Float64 direct convolution.

    .venv/bin/pip install numpy sympy
    .venv/bin/python Experiments/scripts/winograd_f4_accuracy.py

Builds Toom–Cook transforms (Aᵀ, G, Bᵀ) for a set of interpolation points plus infinity (as
wincnn does), convolves a random 4×64×8×8 input with a 64×64×3×3 kernel (σ 0.05) in Float64 and in
Float32, and prints each variant's maximum absolute error next to the direct Float32 sum's.
"""
import numpy as np
from fractions import Fraction as F
rng=np.random.default_rng(0)
def mats(points):
    # Toom-Cook F(m, r=3) with points (finite) + infinity; returns AT (m x n), G (n x 3), BT (n x n)
    n=len(points)+1; m=n-2
    pts=[F(p) for p in points]
    # standard construction via Lagrange: see Lavin/wincnn
    import sympy as sp
    x=sp.symbols('x')
    # use wincnn-like construction
    a=[sp.Rational(p.numerator,p.denominator) for p in pts]
    # A^T: m x n  rows: a_i^j for j<m, last column for infinity
    AT=sp.zeros(m,n)
    for i in range(len(a)):
        for j in range(m): AT[j,i]=a[i]**j
    AT[m-1,n-1]=1
    # G: n x r
    r=3
    G=sp.zeros(n,r)
    for i in range(len(a)):
        denom=1
        for k in range(len(a)):
            if k!=i: denom*= (a[i]-a[k])
        for j in range(r): G[i,j]=a[i]**j/denom
    G[n-1,r-1]=1
    # B^T: n x n from polynomial coefficients of prod (x - a_k) k != i
    BT=sp.zeros(n,n)
    full=1
    for k in range(len(a)): full*= (x-a[k])
    for i in range(len(a)):
        p=sp.Poly(sp.cancel(full/(x-a[i])),x)
        coeffs=p.all_coeffs()[::-1]
        for j,cf in enumerate(coeffs): BT[i,j]=cf
    p=sp.Poly(full,x).all_coeffs()[::-1]
    for j,cf in enumerate(p): BT[n-1,j]=cf
    return np.array(AT.tolist(),dtype=np.float64), np.array(G.tolist(),dtype=np.float64), np.array(BT.tolist(),dtype=np.float64)

def conv_direct(x,w):
    N,C,H,W=x.shape; O=w.shape[0]
    xp=np.pad(x,((0,0),(0,0),(1,1),(1,1)))
    y=np.zeros((N,O,H,W))
    for i in range(3):
        for j in range(3):
            y+=np.einsum('nchw,oc->nohw',xp[:,:,i:i+H,j:j+W],w[:,:,i,j])
    return y

def conv_wino(x,w,AT,G,BT,dt):
    m=AT.shape[0]; n=AT.shape[1]
    N,C,H,W=x.shape; O=w.shape[0]
    th=(H+m-1)//m; tw=(W+m-1)//m
    xp=np.zeros((N,C,th*m+2,tw*m+2),dtype=dt); xp[:,:,1:H+1,1:W+1]=x
    AT=AT.astype(dt);G=G.astype(dt);BT=BT.astype(dt)
    U=np.einsum('ai,ocij,bj->ocab',G,w.astype(dt),G)
    y=np.zeros((N,O,th*m,tw*m),dtype=dt)
    for ty in range(th):
        for tx in range(tw):
            d=xp[:,:,ty*m:ty*m+n,tx*m:tx*m+n]
            V=np.einsum('ai,ncij,bj->ncab',BT,d,BT)
            M=np.einsum('ocab,ncab->noab',U,V)
            y[:,:,ty*m:(ty+1)*m,tx*m:(tx+1)*m]=np.einsum('ia,noab,jb->noij',AT,M,AT)
    return y[:,:,:H,:W]

x=rng.standard_normal((4,64,8,8)); w=rng.standard_normal((64,64,3,3))*0.05
ref=conv_direct(x,w)
print("ref scale", np.abs(ref).max())
for name,pts in [("F2 0,1,-1",[0,1,-1]),("F4 0,1,-1,2,-2",[0,1,-1,2,-2]),("F4 0,1,-1,1/2,-1/2",[0,1,-1,F(1,2),F(-1,2)]),("F4 0,1,-1,2,1/2",[0,1,-1,2,F(1,2)]), ("F4 0,1,-1,1/2,-2",[0,1,-1,F(1,2),-2])]:
    AT,G,BT=mats(pts)
    y64=conv_wino(x,w,AT,G,BT,np.float64)
    y32=conv_wino(x,w,AT,G,BT,np.float32)
    d32=conv_direct(x.astype(np.float32).astype(np.float64),w.astype(np.float32).astype(np.float64))
    print(name, "f64 err", np.abs(y64-ref).max(), "f32 err", np.abs(y32-ref).max())
# float32 direct (im2col-like) error baseline
yd=np.zeros_like(ref,dtype=np.float32)
xp=np.pad(x.astype(np.float32),((0,0),(0,0),(1,1),(1,1)))
for i in range(3):
    for j in range(3):
        yd+=np.einsum('nchw,oc->nohw',xp[:,:,i:i+8,j:j+8],w[:,:,i,j].astype(np.float32))
print("direct f32 err", np.abs(yd-ref).max())
