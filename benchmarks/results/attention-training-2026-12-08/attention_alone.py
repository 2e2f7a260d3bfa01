import time, torch, torch.nn.functional as F, statistics
torch.set_num_threads(1)
B,H,T,D = 16,2,256,32
def sdpa(q,k,v): return F.scaled_dot_product_attention(q,k,v,is_causal=True)
mask = torch.ones(T,T,dtype=torch.bool).triu(1)
def math(q,k,v):
    s = (q @ k.transpose(-1,-2)) * (D ** -0.5)
    s = s.masked_fill(mask, float('-inf'))
    return torch.softmax(s, -1) @ v
def mathf(q,k,v):
    s = (q.float() @ k.float().transpose(-1,-2)) * (D ** -0.5)
    s = s.masked_fill(mask, float('-inf'))
    return (torch.softmax(s, -1) @ v.float()).type_as(q)
def sdpaf(q,k,v): return F.scaled_dot_product_attention(q.float(),k.float(),v.float(),is_causal=True).type_as(q)
def blocked(q,k,v):  # two halves: second half of queries attends to all, first half only first half
    h=T//2
    o1 = F.scaled_dot_product_attention(q[:,:,:h],k[:,:,:h],v[:,:,:h],is_causal=True)
    o2 = F.scaled_dot_product_attention(q[:,:,h:],k,v,attn_mask=~mask[h:])
    return torch.cat([o1,o2],2)
fns = dict(sdpa=sdpa, sdpaf=sdpaf, math=math, mathf=mathf, mathc=torch.compile(math), sdpac=torch.compile(sdpa))
def bench(fn, dt):
    q,k,v = [torch.randn(B,H,T,D,dtype=dt,requires_grad=True) for _ in range(3)]
    def step():
        o = fn(q,k,v); o.float().sum().backward()
    for _ in range(3): step()
    ts=[]
    for _ in range(20):
        t=time.perf_counter(); step(); ts.append(time.perf_counter()-t)
    return statistics.median(ts)*1000
for dt in [torch.bfloat16, torch.float32]:
    print(dt, {n: round(bench(f,dt),1) for n,f in fns.items()})
