-- README.md is index.ipynb rendered by `nbdev_readme` (`quarto render index.ipynb -t gfm`); this filter acts in
-- that format only. On GitHub and PyPI the notebooks' relative links (`02_pruning.ipynb`) lead nowhere, so they
-- point at the published page instead (site-url from nbdev.yml, which nbdev writes from settings.ini), and the
-- one-line description that nbdev moves from the title cell into the metadata goes back under the title.
if not quarto.doc.is_format("gfm") then return {} end

local function site_url()
  local file = io.open(pandoc.path.join({quarto.project.directory, "nbdev.yml"}))
  if not file then return nil end
  local meta = pandoc.read("---\n" .. file:read("a") .. "\n---\n", "markdown").meta
  file:close()
  return meta.website and pandoc.utils.stringify(meta.website["site-url"]):gsub("/$", "")
end

local site = site_url()

local function page(target)
  local name, anchor = target:match("^([%w_%-]+)%.ipynb(#?.*)$")
  if not name or not site then return nil end
  return site .. "/" .. name:gsub("^%d+%w-_", "") .. ".html" .. anchor  -- 02a_x: x.html
end

return {{
  Link = function(link)
    local url = page(link.target)
    if url then link.target = url; return link end
  end,
  Pandoc = function(doc)
    local description = doc.meta.description
    if description then
      doc.blocks:insert(1, pandoc.BlockQuote({pandoc.Para(pandoc.Inlines(description))}))
    end
    return doc
  end,
}}
